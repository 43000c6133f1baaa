//! compressed-tensors checkpoints as llm-compressor writes them and vLLM loads them
//! (`quant_method = "compressed-tensors"`).
//!
//! `quantization_config` has `config_groups` (each with `targets`, `weights`,
//! `input_activations` and optionally its own `format`), `ignore`, `format`,
//! `kv_cache_scheme` and `sparsity_config`. A layer belongs to the first group one of whose
//! targets matches it (`Linear`, an exact module name, or `re:` and a regular expression
//! matched at the start of the name) unless `ignore` matches it. Per quantized layer `P`:
//!
//! - `pack-quantized`: `P.weight_packed` int32 `[out, ceil(in * bits / 32)]` (each row a bit
//!   stream of the codes plus `2^(bits-1)`), `P.weight_scale` `[out, groups]` (group),
//!   `[out, 1]` (channel) or `[1]` (tensor), `P.weight_zero_point` when asymmetric (packed
//!   the same way down each column), `P.weight_shape` int64 `[out, in]`, and in older files
//!   `P.weight_g_idx` int32 `[in]`;
//! - `int-quantized` / `naive-quantized`: `P.weight` int8 `[out, in]` with the same scales;
//! - `float-quantized`: `P.weight` FP8 E4M3 `[out, in]` with the same scales.
//!
//! Weights dequantize as `(q - z) * s` in the scales' dtype. Input activations are
//! quantize-dequantized as the group's `input_activations` say: dynamic per token, or static
//! with `P.input_scale` (and `P.input_zero_point`). `kv_cache_scheme` quantizes keys and
//! values with `model.layers.N.self_attn.k_scale` / `v_scale`.

use super::packed::{ActQuant, Codes, CtCodes, KvQuant, PackedWeight, RoundTo};
use super::tensors::{RawTensor, RawTensors};
use super::Layer;
use crate::error::{EngineError, Result};
use crate::quant::act::ActType;
use crate::quant::pack;

mod config;

pub use config::{CtConfig, QuantArgs, Scheme};

fn single(t: &RawTensor, field: &str) -> Result<f32> {
    let v = t.floats()?;
    if v.len() != 1 {
        return Err(EngineError::bad_file(
            &t.file,
            format!(
                "tensor `{}`: field {field} holds {} values, expected 1",
                t.name,
                v.len()
            ),
        ));
    }
    Ok(v[0])
}

/// Scales `[out, groups]` of a layer and the group size, checked against the strategy.
fn scales(
    w: &QuantArgs,
    t: &RawTensor,
    n_out: usize,
    n_in: usize,
) -> Result<(Vec<f32>, usize, usize)> {
    let (want, groups, group) = match w.strategy.as_str() {
        "tensor" => (vec![1], 1, n_in),
        "channel" => (vec![n_out, 1], 1, n_in),
        _ => {
            let g = w.group_size.unwrap_or(n_in);
            (vec![n_out, n_in.div_ceil(g)], n_in.div_ceil(g), g)
        }
    };
    let ok = t.shape == want || (w.strategy == "tensor" && t.numel() == 1);
    if !ok {
        return Err(EngineError::bad_file(
            &t.file,
            format!(
                "tensor `{}`: field weight_scale has shape {:?}, but strategy {:?} implies {want:?}",
                t.name, t.shape, w.strategy
            ),
        ));
    }
    let mut v = t.floats()?;
    if w.strategy == "tensor" {
        v = vec![v[0]; n_out];
    }
    Ok((v, groups, group))
}

/// Decodes layer `layer` if the checkpoint stores it quantized.
pub fn decode(cfg: &CtConfig, raw: &RawTensors, layer: &Layer) -> Result<Option<PackedWeight>> {
    let p = &layer.prefix;
    let (n_out, n_in) = (layer.out_features, layer.in_features);
    let packed = raw.get(&format!("{p}.weight_packed"));
    let weight = raw.get(&format!("{p}.weight"));
    let stored_int = weight.filter(|w| {
        matches!(
            w.dtype,
            safetensors::Dtype::I8 | safetensors::Dtype::F8_E4M3
        )
    });
    let Some(scheme) = cfg.scheme_of(p) else {
        if let Some(t) = packed.or(stored_int) {
            return Err(EngineError::bad_file(
                &t.file,
                format!(
                    "tensor `{}` is stored quantized, but no group of quantization_config.config_groups targets `{p}`",
                    t.name
                ),
            ));
        }
        return Ok(None);
    };
    let Some(w) = &scheme.weights else {
        return Ok(None);
    };
    let why = format!(
        "compressed-tensors layer `{p}` of config group `{}`",
        scheme.name
    );
    let scale_t = raw.need(&format!("{p}.weight_scale"), &why)?;
    let (scales_v, groups, group) = scales(w, scale_t, n_out, n_in)?;
    let mut bytes: u64 = scale_t.data.len() as u64;
    let codes = match (packed, stored_int) {
        (Some(pt), _) => {
            if w.float {
                return Err(EngineError::bad_file(
                    &pt.file,
                    format!("tensor `{}`: float weights are never bit-packed", pt.name),
                ));
            }
            let shape_t = raw.need(&format!("{p}.weight_shape"), &why)?;
            let shape = shape_t.ints()?;
            if shape != [n_out as i64, n_in as i64] {
                return Err(EngineError::bad_file(
                    &shape_t.file,
                    format!("tensor `{}`: field weight_shape = {shape:?}, but config.json implies [{n_out}, {n_in}]", shape_t.name),
                ));
            }
            let wpr = pack::packed_words(n_in, w.num_bits);
            if pt.shape != [n_out, wpr] {
                return Err(EngineError::bad_file(
                    &pt.file,
                    format!(
                        "tensor `{}`: field weight_packed has shape {:?}, but weight_shape [{n_out}, {n_in}] at {} bits implies [{n_out}, {wpr}]",
                        pt.name, pt.shape, w.num_bits
                    ),
                ));
            }
            bytes += (pt.data.len() + shape_t.data.len()) as u64;
            CtCodes::Packed {
                words: pt.words()?,
                words_per_row: wpr,
            }
        }
        (None, Some(wt)) => {
            let want_float = wt.dtype == safetensors::Dtype::F8_E4M3;
            if want_float != w.float {
                return Err(EngineError::bad_file(
                    &wt.file,
                    format!(
                        "tensor `{}`: dtype {:?}, but config group `{}` has weights of type {}",
                        wt.name,
                        wt.dtype,
                        scheme.name,
                        if w.float { "float" } else { "int" }
                    ),
                ));
            }
            wt.expect_shape(&[n_out, n_in], "config.json")?;
            bytes += wt.data.len() as u64;
            if w.float {
                let codes = wt.bytes_f8()?.to_vec();
                if let Some(i) = codes.iter().position(|&b| b & 0x7f == 0x7f) {
                    return Err(EngineError::bad_file(
                        &wt.file,
                        format!("tensor `{}`: NaN code at flat index {i}", wt.name),
                    ));
                }
                let per_row: Vec<f32> = (0..n_out).map(|o| scales_v[o * groups]).collect();
                return Ok(Some(finish(
                    raw,
                    p,
                    scheme,
                    layer,
                    Codes::Fp8 {
                        codes,
                        scales: per_row,
                    },
                    RoundTo::of(scale_t.dtype),
                    bytes,
                )?));
            }
            CtCodes::Int8(wt.bytes_i8()?)
        }
        (None, None) => {
            let t = weight.map_or(format!("{p}.weight_packed"), |t| t.name.clone());
            return Err(EngineError::bad_file(
                raw.file_of(&t),
                format!(
                    "layer `{p}` is targeted by config group `{}` ({}), but its weight is stored in float, not {}",
                    scheme.name,
                    w.short(),
                    scheme.format
                ),
            ));
        }
    };
    let zeros = if w.symmetric {
        None
    } else {
        let zt = raw.need(
            &format!("{p}.weight_zero_point"),
            &format!("{why}, asymmetric"),
        )?;
        bytes += zt.data.len() as u64;
        Some(zero_points(zt, w, n_out, groups)?)
    };
    let g_idx_name = format!("{p}.weight_g_idx");
    let g_idx = match raw.get(&g_idx_name) {
        Some(t) => {
            t.expect_shape(&[n_in], "the layer's input features")?;
            bytes += t.data.len() as u64;
            let v: Vec<u32> = t.ints()?.into_iter().map(|g| g.max(0) as u32).collect();
            super::gptq::check_groups(raw, &g_idx_name, &v, n_in, group)?;
            Some(v)
        }
        None => None,
    };
    finish(
        raw,
        p,
        scheme,
        layer,
        Codes::CtInt {
            bits: w.num_bits,
            codes,
            scales: scales_v,
            zeros,
            groups,
            g_idx,
            group_size: group,
        },
        RoundTo::of(scale_t.dtype),
        bytes,
    )
    .map(Some)
}

/// Zero points `[out, groups]`: bit-packed down each column (group and channel strategies)
/// or stored as integers.
fn zero_points(zt: &RawTensor, w: &QuantArgs, n_out: usize, groups: usize) -> Result<Vec<f32>> {
    let words = pack::packed_words(n_out, w.num_bits);
    if zt.dtype == safetensors::Dtype::I32 && zt.shape == [words, groups] && w.strategy != "tensor"
    {
        let v = zt.words()?;
        let offset = 1i64 << (w.num_bits - 1);
        let mut out = vec![0f32; n_out * groups];
        for g in 0..groups {
            for o in 0..n_out {
                let code = pack::unpack_bit(|k| v[k * groups + g], o, w.num_bits);
                out[o * groups + g] = (i64::from(code) - offset) as f32;
            }
        }
        return Ok(out);
    }
    let v = zt.ints()?;
    if v.len() == 1 {
        return Ok(vec![v[0] as f32; n_out * groups]);
    }
    if v.len() != n_out * groups {
        return Err(EngineError::bad_file(
            &zt.file,
            format!(
                "tensor `{}`: field weight_zero_point has shape {:?}, expected [{n_out}, {groups}] or packed [{words}, {groups}]",
                zt.name, zt.shape
            ),
        ));
    }
    Ok(v.into_iter().map(|z| z as f32).collect())
}

fn finish(
    raw: &RawTensors,
    p: &str,
    scheme: &Scheme,
    layer: &Layer,
    codes: Codes,
    round_to: RoundTo,
    mut bytes: u64,
) -> Result<PackedWeight> {
    let act = match &scheme.input {
        None => None,
        Some(a) => {
            let ty = if a.float {
                ActType::Fp8E4m3
            } else {
                ActType::Int8
            };
            if a.dynamic {
                Some(ActQuant::Dynamic(ty))
            } else {
                let why = format!(
                    "static input quantization of config group `{}`",
                    scheme.name
                );
                let st = raw.need(&format!("{p}.input_scale"), &why)?;
                bytes += st.data.len() as u64;
                let scale = single(st, "input_scale")?;
                let zero = if a.symmetric {
                    0.0
                } else {
                    let zt = raw.need(&format!("{p}.input_zero_point"), &why)?;
                    bytes += zt.data.len() as u64;
                    let z = zt.ints()?;
                    z.first().copied().unwrap_or(0) as f32
                };
                if !(scale.is_finite() && scale > 0.0) {
                    return Err(EngineError::bad_file(
                        &st.file,
                        format!(
                            "tensor `{}`: field input_scale = {scale}: expected a positive scale",
                            st.name
                        ),
                    ));
                }
                Some(ActQuant::Static { ty, scale, zero })
            }
        }
    };
    Ok(PackedWeight {
        out_features: layer.out_features,
        in_features: layer.in_features,
        codes,
        round_to,
        sparse24: None,
        act,
        stored_bytes: bytes,
    })
}

/// The KV-cache quantization of a checkpoint with a `kv_cache_scheme`.
pub fn kv_quant(cfg: &CtConfig, raw: &RawTensors, layers: usize) -> Result<Option<KvQuant>> {
    let Some(a) = &cfg.kv else {
        return Ok(None);
    };
    let ty = if a.float {
        ActType::Fp8E4m3
    } else {
        ActType::Int8
    };
    let (mut k_scales, mut v_scales) = (Vec::new(), Vec::new());
    for l in 0..layers {
        for (which, out) in [("k_scale", &mut k_scales), ("v_scale", &mut v_scales)] {
            let t = raw.need(
                &format!("model.layers.{l}.self_attn.{which}"),
                "quantization_config.kv_cache_scheme",
            )?;
            let s = single(t, which)?;
            if !(s.is_finite() && s > 0.0) {
                return Err(EngineError::bad_file(
                    &t.file,
                    format!(
                        "tensor `{}`: field {which} = {s}: expected a positive scale",
                        t.name
                    ),
                ));
            }
            out.push(s);
        }
    }
    Ok(Some(KvQuant {
        ty,
        k_scales,
        v_scales,
    }))
}
