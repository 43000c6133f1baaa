//! GPTQ checkpoints as AutoGPTQ and GPTQModel write them (`quant_method = "gptq"`).
//!
//! Per linear layer `P`: `P.qweight` int32 `[in * bits / 32, out]` (codes packed down each
//! column, see [`crate::quant::pack`]), `P.qzeros` int32 `[groups, out * bits / 32]`,
//! `P.scales` f16 `[groups, out]`, `P.g_idx` int32 `[in]` (the group of each input column;
//! with `desc_act` a permutation of the groups, otherwise `i / group_size`, and computed so
//! when absent). `bits` is 2, 3, 4 or 8; `group_size` -1 means one group per column. The
//! `v1` checkpoint format (`checkpoint_format = "gptq"`, the default) stores each zero point
//! minus one; `gptq_v2` stores it as is.
//!
//! Dequantization (GPTQModel's `dequantize_weight`): `w[o][i] = s[g][o] * (q[i][o] - z[g][o])`
//! with `g = g_idx[i]`, multiplied in the scales' dtype (f16: the product rounded to f16).

use super::json::Fields;
use super::packed::{Codes, PackedWeight, RoundTo};
use super::tensors::RawTensors;
use super::Layer;
use crate::error::{EngineError, Result};

/// GPTQ settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GptqConfig {
    /// Bits per weight code.
    pub bits: u32,
    /// Input columns per group (`None`: one group per column, `group_size = -1`).
    pub group_size: Option<usize>,
    /// Activation order (`desc_act`).
    pub desc_act: bool,
    /// Symmetric grid.
    pub sym: bool,
    /// Zero points stored minus one (the `gptq` v1 checkpoint format).
    pub v1: bool,
}

impl GptqConfig {
    /// Parses the settings object.
    pub fn parse(f: &Fields) -> Result<GptqConfig> {
        let bits = f.u64_opt("bits")?.ok_or_else(|| f.err("bits", "missing"))?;
        if ![2, 3, 4, 8].contains(&bits) {
            return Err(f.err("bits", format!("= {bits}: GPTQ stores 2, 3, 4 or 8 bits")));
        }
        let group_size = match f.i64_opt("group_size")?.unwrap_or(-1) {
            -1 => None,
            g if g > 0 => Some(g as usize),
            g => {
                return Err(f.err(
                    "group_size",
                    format!("= {g}: expected -1 (per column) or a positive size"),
                ))
            }
        };
        let fmt = match f.str_opt("checkpoint_format")? {
            Some(s) => s,
            None => f.str_opt("format")?.unwrap_or("gptq"),
        };
        let v1 = match fmt {
            "gptq" => true,
            "gptq_v2" => false,
            other => {
                return Err(f.err(
                    "checkpoint_format",
                    format!("= {other:?}: supported are \"gptq\" (v1) and \"gptq_v2\""),
                ))
            }
        };
        Ok(GptqConfig {
            bits: bits as u32,
            group_size,
            desc_act: f.bool_opt("desc_act")?.unwrap_or(false),
            sym: f.bool_opt("sym")?.unwrap_or(true),
            v1,
        })
    }

    /// The method as written in reports (`gptq:w4g128:act`).
    pub fn method(&self) -> String {
        format!(
            "gptq:w{}{}{}{}",
            self.bits,
            self.group_size.map_or(String::new(), |g| format!("g{g}")),
            if self.desc_act { ":act" } else { "" },
            if self.sym { "" } else { ":asym" }
        )
    }
}

/// Checks that `g_idx` assigns every group exactly its number of columns.
pub(crate) fn check_groups(
    raw: &RawTensors,
    name: &str,
    g_idx: &[u32],
    in_features: usize,
    group: usize,
) -> Result<()> {
    let groups = in_features.div_ceil(group);
    let mut count = vec![0usize; groups];
    for (i, &g) in g_idx.iter().enumerate() {
        let Some(c) = count.get_mut(g as usize) else {
            return Err(EngineError::bad_file(
                raw.file_of(name),
                format!(
                    "tensor `{name}`: field g_idx names group {g} at column {i}, but there are {groups} groups"
                ),
            ));
        };
        *c += 1;
    }
    for (g, &c) in count.iter().enumerate() {
        let want = group.min(in_features - g * group);
        if c != want {
            return Err(EngineError::bad_file(
                raw.file_of(name),
                format!(
                    "tensor `{name}`: field g_idx is not a permutation of the groups: group {g} has {c} columns, expected {want}"
                ),
            ));
        }
    }
    Ok(())
}

/// Decodes layer `layer` if the checkpoint stores it GPTQ-packed.
pub fn decode(cfg: &GptqConfig, raw: &RawTensors, layer: &Layer) -> Result<Option<PackedWeight>> {
    let p = &layer.prefix;
    let qweight_name = format!("{p}.qweight");
    let Some(qweight) = raw.get(&qweight_name) else {
        return Ok(None);
    };
    let (n_out, n_in) = (layer.out_features, layer.in_features);
    let bits = cfg.bits as usize;
    let group = cfg.group_size.unwrap_or(n_in);
    let groups = n_in.div_ceil(group);
    let why = format!("GPTQ layer `{p}`");
    if !(n_in * bits).is_multiple_of(32) || !(n_out * bits).is_multiple_of(32) {
        return Err(EngineError::bad_file(
            raw.file_of(&qweight_name),
            format!(
                "tensor `{qweight_name}`: {n_in}x{n_out} weights cannot be packed at {bits} bits"
            ),
        ));
    }
    qweight.expect_shape(&[n_in * bits / 32, n_out], "config.json with bits")?;
    let qzeros = raw.need(&format!("{p}.qzeros"), &why)?;
    qzeros.expect_shape(&[groups, n_out * bits / 32], "group_size with bits")?;
    let scales = raw.need(&format!("{p}.scales"), &why)?;
    scales.expect_shape(&[groups, n_out], "group_size")?;
    let g_idx_name = format!("{p}.g_idx");
    let g_idx: Vec<u32> = match raw.get(&g_idx_name) {
        Some(t) => {
            t.expect_shape(&[n_in], "the layer's input features")?;
            let v = t.ints()?;
            if let Some(i) = v.iter().position(|&g| g < 0 || g as usize >= groups) {
                return Err(EngineError::bad_file(
                    &t.file,
                    format!(
                        "tensor `{g_idx_name}`: field g_idx names group {} at column {i}, but there are {groups} groups",
                        v[i]
                    ),
                ));
            }
            let v: Vec<u32> = v.into_iter().map(|g| g as u32).collect();
            check_groups(raw, &g_idx_name, &v, n_in, group)?;
            v
        }
        None => (0..n_in).map(|i| (i / group) as u32).collect(),
    };
    let stored_bytes = [
        Some(qweight),
        Some(qzeros),
        Some(scales),
        raw.get(&g_idx_name),
    ]
    .into_iter()
    .flatten()
    .map(|t| t.data.len() as u64)
    .sum();
    Ok(Some(PackedWeight {
        out_features: n_out,
        in_features: n_in,
        codes: Codes::Gptq {
            bits: cfg.bits,
            qweight: qweight.words()?,
            qzeros: qzeros.words()?,
            scales: scales.floats()?,
            g_idx,
            zero_offset: u32::from(cfg.v1),
        },
        round_to: RoundTo::of(scales.dtype),
        sparse24: None,
        act: None,
        stored_bytes,
    }))
}
