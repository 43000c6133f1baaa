//! llama.cpp's file-type recipes: which ggml type each tensor of a model gets when
//! `llama-quantize` is asked for a file type such as `Q4_K_M` (llama.cpp's
//! `llama_tensor_get_type` in `src/llama-quant.cpp`, as described there; written here afresh
//! for dense models: no expert-specific rules).
//!
//! The choice depends on the tensor's role (by GGUF name), its position among the tensors of
//! that role (counted in llama.cpp's processing order, [`llama_order`]), the model's grouped
//! query attention factor, and whether an importance matrix is given. Rows that a block does
//! not divide fall back to a 32-block type, or f16 (`tensor_type_fallback`).

use compsafe_core::{GgufFtype, GgufType};

use super::GgmlType;

/// The model facts the recipe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipeModel {
    /// Decoder layers.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Experts per MoE layer (0 or 1 for dense models).
    pub n_expert: usize,
    /// llama.cpp classes the model as a 70B (80 layers with grouped-query attention).
    pub is_70b: bool,
}

impl RecipeModel {
    fn n_gqa(&self) -> usize {
        self.n_head / self.n_head_kv.max(1)
    }
}

/// A tensor's role in llama.cpp's quantization rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    use Category::*;
    if name == "output.weight" {
        return Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return TokenEmbd;
    }
    for (pat, c) in [
        ("attn_qkv.weight", AttnQkv),
        ("attn_kv_b.weight", AttnKvB),
        ("attn_v.weight", AttnV),
        ("attn_k.weight", AttnK),
        ("attn_q.weight", AttnQ),
        ("attn_output.weight", AttnOutput),
        ("ffn_up", FfnUp),
        ("ffn_gate", FfnGate),
        ("ffn_down", FfnDown),
    ] {
        if name.contains(pat) {
            return c;
        }
    }
    Other
}

fn is_attn_v(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// Whether llama.cpp quantizes a tensor at all (`tensor_allows_quantization`, for the tensor
/// names of the supported architectures): 2-D or larger, named `*weight`, not a norm.
pub fn allows_quantization(name: &str, n_dims: usize) -> bool {
    if n_dims < 2 || !name.ends_with("weight") {
        return false;
    }
    let excluded = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "attn_rel_b.weight",
        "position_embd",
        "token_types",
    ];
    !excluded.iter().any(|e| name.contains(e))
}

/// The layer index in a GGUF name (`blk.N.`), for llama.cpp's tensor order.
fn layer_of(name: &str) -> i64 {
    name.strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

/// llama.cpp's processing (and output) order of tensors: by layer (non-layer tensors first),
/// then by name (`weight_name_comparer`).
pub fn llama_order(a: &str, b: &str) -> std::cmp::Ordering {
    layer_of(a).cmp(&layer_of(b)).then_with(|| a.cmp(b))
}

fn gg(t: GgufType) -> GgmlType {
    GgmlType::of(t)
}

/// Mutable counters of llama.cpp's `quantize_state_impl`.
struct State {
    n_attention_wv: usize,
    i_attention_wv: usize,
    n_ffn_down: usize,
    i_ffn_down: usize,
    has_imatrix: bool,
    tied: bool,
}

/// `tensor_type_fallback`: the type actually stored for rows of `ncols` values.
pub fn fallback(target: GgmlType, ncols: u64) -> GgmlType {
    use GgmlType::*;
    let qk = target.block_size() as u64;
    if ncols.is_multiple_of(qk) {
        return target;
    }
    let ret = match target {
        IQ1S | IQ1M | IQ2XXS | IQ2XS | IQ2S | IQ3XXS | IQ3S | IQ4XS => IQ4NL,
        Q2K | Q3K | TQ1_0 | TQ2_0 => Q4_0,
        Q4K => Q5_0,
        Q5K => Q5_1,
        Q6K => Q8_0,
        other => other,
    };
    if ncols.is_multiple_of(ret.block_size() as u64) {
        ret
    } else {
        F16
    }
}

#[allow(clippy::too_many_lines)]
fn get_type_impl(
    st: &mut State,
    m: &RecipeModel,
    ftype: GgufFtype,
    name: &str,
    ncols: u64,
    cat: Category,
    default: GgmlType,
) -> GgmlType {
    use Category as C;
    use GgufFtype as F;
    use GgufType as T;
    let mut new_type = default;
    let use_more_bits = |i: usize, n: usize| -> bool {
        let (i, n) = (i as i64, n as i64);
        i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
    };
    let n_gqa = m.n_gqa();
    let iq_low = matches!(
        ftype,
        F::IQ2XXS | F::IQ2XS | F::IQ1S | F::IQ2S | F::IQ2M | F::IQ1M
    );
    if cat == C::Output || (st.tied && cat == C::TokenEmbd) {
        let qk = default.block_size() as u64;
        if !ncols.is_multiple_of(qk) {
            new_type = gg(T::Q8_0);
        } else if matches!(
            ftype,
            F::IQ2XXS | F::IQ2XS | F::IQ3XXS | F::IQ1S | F::IQ2S | F::IQ2M | F::IQ1M
        ) {
            new_type = gg(T::Q5K);
        } else if new_type != gg(T::Q8_0) {
            new_type = gg(T::Q6K);
        }
    } else if cat == C::TokenEmbd {
        if matches!(ftype, F::IQ2XXS | F::IQ2XS | F::IQ1S | F::IQ1M) {
            new_type = gg(T::Q2K);
        } else if matches!(ftype, F::IQ2S | F::IQ2M | F::IQ3XXS) {
            new_type = gg(T::IQ3S);
        } else if matches!(ftype, F::TQ1_0 | F::TQ2_0) {
            new_type = gg(T::Q4K);
        }
    } else if iq_low {
        let iq2s_like = matches!(ftype, F::IQ2S | F::IQ2M);
        if is_attn_v(cat) {
            new_type = if n_gqa >= 4 || m.n_expert >= 4 {
                gg(T::Q4K)
            } else if iq2s_like {
                gg(T::IQ3S)
            } else {
                gg(T::Q2K)
            };
            st.i_attention_wv += 1;
        } else if m.n_expert == 8 && cat == C::AttnK {
            new_type = gg(T::Q4K);
        } else if cat == C::FfnDown {
            if st.i_ffn_down < st.n_ffn_down / 8 {
                new_type = if iq2s_like { gg(T::IQ3S) } else { gg(T::Q2K) };
            }
            st.i_ffn_down += 1;
        } else if cat == C::AttnOutput {
            if m.n_expert == 8 {
                new_type = gg(T::Q5K);
            } else if matches!(ftype, F::IQ1S | F::IQ1M) {
                new_type = gg(T::IQ2XXS);
            } else if iq2s_like {
                new_type = gg(T::IQ3S);
            }
        }
    } else if is_attn_v(cat) {
        let i = st.i_attention_wv;
        match ftype {
            F::Q2K => new_type = gg(if n_gqa >= 4 { T::Q4K } else { T::Q3K }),
            F::Q2KS if n_gqa >= 4 => new_type = gg(T::Q4K),
            F::IQ3XXS => {
                new_type = gg(if n_gqa >= 4 {
                    T::Q4K
                } else if !st.has_imatrix {
                    T::IQ3S
                } else {
                    T::IQ3XXS
                })
            }
            F::IQ3XS | F::IQ3S if n_gqa >= 4 => new_type = gg(T::Q4K),
            F::IQ3M => new_type = gg(T::Q4K),
            F::Q3KM => new_type = gg(if i < 2 { T::Q5K } else { T::Q4K }),
            F::Q3KL => new_type = gg(T::Q5K),
            F::IQ4NL | F::IQ4XS if n_gqa >= 4 => new_type = gg(T::Q5K),
            F::Q4KM | F::Q5KM if use_more_bits(i, st.n_attention_wv) => new_type = gg(T::Q6K),
            F::Q4KS if i < 4 => new_type = gg(T::Q5K),
            _ => {}
        }
        if m.is_70b && (new_type == gg(T::Q3K) || new_type == gg(T::Q4K)) {
            new_type = gg(T::Q5K);
        }
        if m.n_expert == 8 {
            new_type = gg(T::Q8_0);
        }
        st.i_attention_wv += 1;
    } else if cat == C::AttnK {
        if m.n_expert == 8 {
            new_type = gg(T::Q8_0);
        } else if ftype == F::IQ3XS {
            new_type = gg(T::IQ3XXS);
        } else if ftype == F::IQ3XXS {
            new_type = gg(T::IQ2S);
        }
    } else if cat == C::AttnQ {
        if ftype == F::IQ3XS {
            new_type = gg(T::IQ3XXS);
        } else if ftype == F::IQ3XXS {
            new_type = gg(T::IQ2S);
        }
    } else if cat == C::FfnDown {
        let (i, n) = (st.i_ffn_down, st.n_ffn_down);
        let first8 = i < n / 8;
        match ftype {
            F::Q2K => new_type = gg(T::Q3K),
            F::Q2KS if first8 => new_type = gg(T::Q4K),
            F::IQ3XXS if !st.has_imatrix => new_type = gg(if first8 { T::Q4K } else { T::Q3K }),
            F::Q3KM => {
                // Not Falcon: the third branch of llama.cpp's choice is never taken.
                new_type = gg(if i < n / 16 { T::Q5K } else { T::Q4K });
            }
            F::IQ3M if first8 || (m.n_expert == 8 && use_more_bits(i, n)) => new_type = gg(T::Q4K),
            F::Q3KL => new_type = gg(T::Q5K),
            F::Q4KM if use_more_bits(i, n) => new_type = gg(T::Q6K),
            F::IQ4NL | F::IQ4XS if first8 && !st.has_imatrix => new_type = gg(T::Q5K),
            F::Q5KM if use_more_bits(i, n) => new_type = gg(T::Q6K),
            F::Q4KS if first8 => new_type = gg(T::Q5K),
            F::Q4_0 | F::Q5_0 if st.has_imatrix && first8 => {
                new_type = gg(if ftype == F::Q4_0 { T::Q4_1 } else { T::Q5_1 })
            }
            _ => {}
        }
        st.i_ffn_down += 1;
    } else if cat == C::AttnOutput {
        if m.n_expert == 8 {
            if matches!(
                ftype,
                F::Q2K
                    | F::IQ3XS
                    | F::IQ3XXS
                    | F::Q3KS
                    | F::Q3KM
                    | F::IQ4NL
                    | F::Q4KS
                    | F::Q4KM
                    | F::IQ3S
                    | F::IQ3M
                    | F::IQ4XS
            ) {
                new_type = gg(T::Q5K);
            }
        } else {
            match ftype {
                F::Q2K => new_type = gg(T::Q3K),
                F::IQ3XXS => new_type = gg(T::IQ3S),
                F::Q3KM | F::IQ3M => new_type = gg(T::Q4K),
                F::Q3KL => new_type = gg(T::Q5K),
                _ => {}
            }
        }
    } else if cat == C::AttnQkv {
        match ftype {
            F::Q3KM | F::Q3KL | F::IQ3M => new_type = gg(T::Q4K),
            F::Q4KM => new_type = gg(T::Q5K),
            F::Q5KM => new_type = gg(T::Q6K),
            _ => {}
        }
    } else if matches!(cat, C::FfnGate | C::FfnUp) {
        let layer = layer_of(name).max(0) as usize;
        let n = m.n_layer;
        if ftype == F::IQ3XS && layer >= n / 8 && layer < 7 * n / 8 {
            new_type = gg(T::IQ3XXS);
        }
    }
    new_type
}

/// One tensor as the recipe sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeTensor {
    /// GGUF name.
    pub name: String,
    /// Dimensions in ggml order (`ne[0]` = row length).
    pub ne: Vec<u64>,
    /// The type it is stored in now.
    pub current: GgmlType,
}

/// The type of every tensor (given in llama.cpp's order, [`llama_order`]) under `ftype`, as
/// `llama-quantize` chooses it. `pure` gives every quantizable tensor the default type.
pub fn tensor_types(
    m: &RecipeModel,
    ftype: GgufFtype,
    pure: bool,
    has_imatrix: bool,
    tensors: &[RecipeTensor],
) -> Vec<GgmlType> {
    let default = gg(ftype.default_type());
    let mut st = State {
        n_attention_wv: tensors
            .iter()
            .filter(|t| is_attn_v(category(&t.name)))
            .count(),
        i_attention_wv: 0,
        n_ffn_down: m.n_layer,
        i_ffn_down: 0,
        has_imatrix,
        tied: !tensors.iter().any(|t| t.name == "output.weight"),
    };
    tensors
        .iter()
        .map(|t| {
            if !allows_quantization(&t.name, t.ne.len()) {
                return t.current;
            }
            let ncols = t.ne.first().copied().unwrap_or(0);
            let chosen = if pure {
                default
            } else {
                get_type_impl(
                    &mut st,
                    m,
                    ftype,
                    &t.name,
                    ncols,
                    category(&t.name),
                    default,
                )
            };
            fallback(chosen, ncols)
        })
        .collect()
}

/// llama.cpp insists on an importance matrix for these (`tensor_requires_imatrix`).
pub fn requires_imatrix(name: &str, ty: GgmlType, ftype: GgufFtype) -> bool {
    if name == "token_embd.weight"
        || name == "per_layer_token_embd.weight"
        || name == "output.weight"
    {
        return false;
    }
    match ty {
        GgmlType::IQ3XXS
        | GgmlType::IQ2XXS
        | GgmlType::IQ2XS
        | GgmlType::IQ2S
        | GgmlType::IQ1M
        | GgmlType::IQ1S => true,
        GgmlType::Q2K => ftype == GgufFtype::Q2KS,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(n_layer: usize, n_head: usize, n_head_kv: usize) -> RecipeModel {
        RecipeModel {
            n_layer,
            n_head,
            n_head_kv,
            n_expert: 0,
            is_70b: false,
        }
    }

    fn llama_tensors(n_layer: usize, hidden: u64, ffn: u64, tied: bool) -> Vec<RecipeTensor> {
        let mut names: Vec<(String, Vec<u64>)> = vec![
            ("token_embd.weight".into(), vec![hidden, 1000]),
            ("output_norm.weight".into(), vec![hidden]),
        ];
        if !tied {
            names.push(("output.weight".into(), vec![hidden, 1000]));
        }
        for l in 0..n_layer {
            for (t, ne) in [
                ("attn_norm.weight", vec![hidden]),
                ("attn_q.weight", vec![hidden, hidden]),
                ("attn_k.weight", vec![hidden, hidden / 2]),
                ("attn_v.weight", vec![hidden, hidden / 2]),
                ("attn_output.weight", vec![hidden, hidden]),
                ("ffn_norm.weight", vec![hidden]),
                ("ffn_gate.weight", vec![hidden, ffn]),
                ("ffn_up.weight", vec![hidden, ffn]),
                ("ffn_down.weight", vec![ffn, hidden]),
            ] {
                names.push((format!("blk.{l}.{t}"), ne));
            }
        }
        names.sort_by(|a, b| llama_order(&a.0, &b.0));
        names
            .into_iter()
            .map(|(name, ne)| RecipeTensor {
                name,
                ne,
                current: GgmlType::F32,
            })
            .collect()
    }

    #[test]
    fn q4_k_m_on_a_32_layer_model() {
        let t = llama_tensors(32, 4096, 11008, false);
        let types = tensor_types(&model(32, 32, 8), GgufFtype::Q4KM, false, false, &t);
        let of = |n: &str| types[t.iter().position(|x| x.name == n).unwrap()];
        assert_eq!(of("output.weight"), GgmlType::Q6K);
        assert_eq!(of("token_embd.weight"), GgmlType::Q4K);
        assert_eq!(of("output_norm.weight"), GgmlType::F32);
        // use_more_bits: layers 0-3, 28-31 and every third from 6.
        for l in 0..32 {
            let more = !(4..28).contains(&l) || (l - 4) % 3 == 2;
            let want = if more { GgmlType::Q6K } else { GgmlType::Q4K };
            assert_eq!(of(&format!("blk.{l}.attn_v.weight")), want, "attn_v {l}");
            assert_eq!(
                of(&format!("blk.{l}.ffn_down.weight")),
                want,
                "ffn_down {l}"
            );
            assert_eq!(of(&format!("blk.{l}.attn_q.weight")), GgmlType::Q4K);
        }
    }

    #[test]
    fn tied_embeddings_take_the_output_type_and_narrow_rows_fall_back() {
        let t = llama_tensors(2, 256, 512, true);
        let types = tensor_types(&model(2, 4, 2), GgufFtype::Q4KM, false, false, &t);
        let embd = t
            .iter()
            .position(|x| x.name == "token_embd.weight")
            .unwrap();
        assert_eq!(types[embd], GgmlType::Q6K);
        assert_eq!(fallback(GgmlType::Q4K, 64), GgmlType::Q5_0);
        assert_eq!(fallback(GgmlType::IQ4XS, 96), GgmlType::IQ4NL);
        assert_eq!(fallback(GgmlType::Q6K, 48), GgmlType::F16);
        assert_eq!(fallback(GgmlType::Q8_0, 48), GgmlType::F16);
    }

    #[test]
    fn order_puts_global_tensors_first_then_layers_numerically() {
        let mut v = vec![
            "blk.10.attn_q.weight",
            "blk.2.attn_q.weight",
            "output.weight",
            "blk.2.attn_k.weight",
            "token_embd.weight",
        ];
        v.sort_by(|a, b| llama_order(a, b));
        assert_eq!(
            v,
            [
                "output.weight",
                "token_embd.weight",
                "blk.2.attn_k.weight",
                "blk.2.attn_q.weight",
                "blk.10.attn_q.weight"
            ]
        );
    }
}
