//! Safety-preserving compression: attention heads kept out of a variant's compression.
//!
//! A protected query head `h` of layer `l` keeps, in bf16, the reference's
//! - rows `h * d .. (h + 1) * d` of `q_proj` (its queries),
//! - rows `g * d .. (g + 1) * d` of `k_proj` and `v_proj`, `g` the key/value head it reads
//!   (`g = h / (heads / kv_heads)` under grouped-query attention),
//! - columns `h * d .. (h + 1) * d` of `o_proj` (its contribution to the residual stream),
//! - in a fused `qkv_proj` (Phi-3: query rows, then key rows, then value rows) the same rows at
//!   their offsets: `h * d ..` for the query, `H * d + g * d ..` for the key and
//!   `(H + K) * d + g * d ..` for the value (`H` query and `K` key/value heads),
//!
//! while the rest of each matrix stays compressed. The stored size counts the protected
//! elements at 16 bits instead of the compressed width, so the cost of protection shows in the
//! variant's bytes and bits per weight.

use candle_core::{DType, Tensor};
use compsafe_core::HeadRef;
use half::bf16;

use super::{f32_values, relative_error, Compressed, HeadLayout, LinearWeight, WeightMap};
use crate::error::{EngineError, Result};

/// Element (row-major) ranges of one matrix that a set of heads protects.
fn protected_cells(
    name: &str,
    rows: usize,
    cols: usize,
    heads: &[HeadRef],
    layout: &HeadLayout,
) -> Option<Vec<usize>> {
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let d = layout.head_dim;
    let group = (layout.num_heads / layout.num_kv_heads.max(1)).max(1);
    let mine: Vec<usize> = heads
        .iter()
        .filter(|h| h.layer == layer)
        .map(|h| h.head)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut cells = Vec::new();
    let mut rows_of = |blocks: &[usize], offset: usize| {
        for &b in blocks {
            for r in offset + b * d..(offset + (b + 1) * d).min(rows) {
                cells.extend(r * cols..(r + 1) * cols);
            }
        }
    };
    let mut kv: Vec<usize> = mine.iter().map(|h| h / group).collect();
    kv.sort_unstable();
    kv.dedup();
    match part {
        "self_attn.q_proj.weight" => rows_of(&mine, 0),
        "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => rows_of(&kv, 0),
        "self_attn.qkv_proj.weight" => {
            let (q_rows, kv_rows) = (layout.num_heads * d, layout.num_kv_heads * d);
            rows_of(&mine, 0);
            rows_of(&kv, q_rows);
            rows_of(&kv, q_rows + kv_rows);
        }
        "self_attn.o_proj.weight" => {
            for r in 0..rows {
                for &h in &mine {
                    cells.extend(r * cols + h * d..r * cols + ((h + 1) * d).min(cols));
                }
            }
        }
        _ => return None,
    }
    Some(cells)
}

/// Puts the reference's values (in bf16) back into the protected cells of every compressed
/// attention matrix, and updates the stats (error, bytes, bits per weight, note).
pub fn restore_heads(
    compressed: &mut Compressed,
    reference: &WeightMap,
    heads: &[HeadRef],
    layout: &HeadLayout,
) -> Result<()> {
    for h in heads {
        if h.layer >= layout.num_layers || h.head >= layout.num_heads {
            return Err(EngineError::Invalid(format!(
                "head {}.{} does not exist ({} layers of {} heads)",
                h.layer, h.head, layout.num_layers, layout.num_heads
            )));
        }
    }
    let names: Vec<String> = compressed.weights.keys().cloned().collect();
    for name in names {
        let Some(orig) = reference.get(&name) else {
            continue;
        };
        let Ok((rows, cols)) = orig.dims2() else {
            continue;
        };
        let Some(cells) = protected_cells(&name, rows, cols, heads, layout) else {
            continue;
        };
        let current = match &compressed.weights[&name] {
            LinearWeight::Dense(t) => t.clone(),
            _ => {
                return Err(EngineError::Invalid(format!(
                    "`{name}` is block-quantized; part of it cannot be kept"
                )))
            }
        };
        let dtype = current.dtype();
        let mut values = f32_values(&name, &current)?;
        let reference_values = f32_values(&name, orig)?;
        for &i in &cells {
            values[i] = bf16::from_f32(reference_values[i]).to_f32();
        }
        let rel = relative_error(&reference_values, &values);
        let t = Tensor::from_vec(values, (rows, cols), orig.device())?.to_dtype(
            if dtype == DType::F32 {
                DType::F32
            } else {
                dtype
            },
        )?;
        compressed
            .weights
            .insert(name.clone(), LinearWeight::Dense(t));
        if let Some(stat) = compressed.stats.iter_mut().find(|s| s.name == name) {
            let n = cells.len() as f64;
            let bytes = stat.bytes as f64 + n * (16.0 - stat.bits_per_weight) / 8.0;
            stat.bytes = bytes.max(0.0).round() as u64;
            stat.bits_per_weight = bytes * 8.0 / stat.numel.max(1) as f64;
            stat.rel_error = rel;
            let note = format!("{} protected elements kept in bf16", cells.len());
            stat.note = Some(match stat.note.take() {
                Some(n) => format!("{n}; {note}"),
                None => note,
            });
        }
    }
    Ok(())
}

/// Keeps whole decoder layers out of the compression: every compressed tensor of a protected
/// layer is replaced by the reference's values in bf16 (16 bits per weight in the stats).
pub fn restore_layers(
    compressed: &mut Compressed,
    reference: &WeightMap,
    layers: &[usize],
    layout: &HeadLayout,
) -> Result<()> {
    for &l in layers {
        if l >= layout.num_layers {
            return Err(EngineError::Invalid(format!(
                "layer {l} does not exist ({} layers)",
                layout.num_layers
            )));
        }
    }
    let names: Vec<String> = compressed.weights.keys().cloned().collect();
    for name in names {
        let layer = name
            .strip_prefix("model.layers.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(l, _)| l.parse::<usize>().ok());
        if !layer.is_some_and(|l| layers.contains(&l)) {
            continue;
        }
        let Some(orig) = reference.get(&name) else {
            continue;
        };
        let reference_values = f32_values(&name, orig)?;
        let values: Vec<f32> = reference_values
            .iter()
            .map(|&x| bf16::from_f32(x).to_f32())
            .collect();
        let rel = relative_error(&reference_values, &values);
        let t = Tensor::from_vec(values, orig.shape(), orig.device())?;
        compressed
            .weights
            .insert(name.clone(), LinearWeight::Dense(t));
        if let Some(stat) = compressed.stats.iter_mut().find(|s| s.name == name) {
            stat.bytes = stat.numel as u64 * 2;
            stat.bits_per_weight = 16.0;
            stat.rel_error = rel;
            stat.note = Some("layer protected: kept in bf16".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_the_head_layout() {
        let layout = HeadLayout {
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 2,
        };
        let h = [HeadRef { layer: 1, head: 3 }];
        // q: rows 6..8 of an [8, 3] matrix.
        let q = protected_cells("model.layers.1.self_attn.q_proj.weight", 8, 3, &h, &layout);
        assert_eq!(q.unwrap(), (18..24).collect::<Vec<_>>());
        // k: head 3 reads kv head 1 -> rows 2..4 of a [4, 3] matrix.
        let k = protected_cells("model.layers.1.self_attn.k_proj.weight", 4, 3, &h, &layout);
        assert_eq!(k.unwrap(), (6..12).collect::<Vec<_>>());
        // o: columns 6..8 of each row of a [2, 8] matrix.
        let o = protected_cells("model.layers.1.self_attn.o_proj.weight", 2, 8, &h, &layout);
        assert_eq!(o.unwrap(), vec![6, 7, 14, 15]);
        assert!(
            protected_cells("model.layers.0.self_attn.q_proj.weight", 8, 3, &h, &layout).is_none()
        );
        assert!(protected_cells("model.layers.1.mlp.up_proj.weight", 8, 3, &h, &layout).is_none());
        // A fused qkv_proj [8 + 4 + 4, 3] protects the same rows at their offsets: q rows 6..8,
        // k rows 8 + 2..4, v rows 12 + 2..4.
        let qkv = protected_cells(
            "model.layers.1.self_attn.qkv_proj.weight",
            16,
            3,
            &h,
            &layout,
        );
        let mut want: Vec<usize> = (18..24).collect();
        want.extend(30..36);
        want.extend(42..48);
        assert_eq!(qkv.unwrap(), want);
    }
}
