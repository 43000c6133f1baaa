//! AWQ checkpoints in AutoAWQ's GEMM layout (`quant_method = "awq"`, version `gemm`), as
//! AutoAWQ, GPTQModel and llm-compressor's AutoAWQ export write them.
//!
//! Per linear layer `P`: `P.qweight` int32 `[in, out / 8]` and `P.qzeros` int32
//! `[groups, out / 8]`, eight 4-bit codes per word in the order 0, 2, 4, 6, 1, 3, 5, 7 (see
//! [`crate::quant::pack::AWQ_ORDER`]), `P.scales` f16 `[groups, out]`, group `i / group_size`.
//!
//! Dequantization (AutoAWQ's `dequantize_gemm`): `w[o][i] = (q[i][o] - z[g][o]) * s[g][o]`,
//! multiplied in the scales' dtype.

use super::json::Fields;
use super::packed::{Codes, PackedWeight, RoundTo};
use super::tensors::RawTensors;
use super::Layer;
use crate::error::{EngineError, Result};

/// AWQ settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AwqConfig {
    /// Input columns per group.
    pub group_size: usize,
}

impl AwqConfig {
    /// Parses the settings object (HF `AwqConfig` keys or AutoAWQ's `quant_config.json`).
    pub fn parse(f: &Fields) -> Result<AwqConfig> {
        let (bits_key, bits) = match f.u64_opt("bits")? {
            Some(b) => ("bits", b),
            None => ("w_bit", f.u64_opt("w_bit")?.unwrap_or(4)),
        };
        if bits != 4 {
            return Err(f.err(
                bits_key,
                format!("= {bits}: AWQ's GEMM layout stores 4 bits"),
            ));
        }
        let (gkey, group) = match f.i64_opt("group_size")? {
            Some(g) => ("group_size", g),
            None => ("q_group_size", f.i64_opt("q_group_size")?.unwrap_or(128)),
        };
        if group <= 0 {
            return Err(f.err(gkey, format!("= {group}: expected a positive group size")));
        }
        let version = match f.str_opt("version")? {
            Some(v) => Some(("version", v)),
            None => f.str_opt("format")?.map(|v| ("format", v)),
        };
        if let Some((key, v)) = version {
            if !v.eq_ignore_ascii_case("gemm") {
                return Err(f.err(
                    key,
                    format!("= {v:?}: only AutoAWQ's GEMM layout is supported"),
                ));
            }
        }
        // `zero_point = false` (GPTQModel's symmetric AWQ) still stores `qzeros` (the
        // grid's middle), which the decoder reads like any other.
        f.bool_opt("zero_point")?;
        Ok(AwqConfig {
            group_size: group as usize,
        })
    }

    /// The method as written in reports (`awq:w4g128`).
    pub fn method(&self) -> String {
        format!("awq:w4g{}", self.group_size)
    }
}

/// Decodes layer `layer` if the checkpoint stores it AWQ-packed.
pub fn decode(cfg: &AwqConfig, raw: &RawTensors, layer: &Layer) -> Result<Option<PackedWeight>> {
    let p = &layer.prefix;
    let qweight_name = format!("{p}.qweight");
    let Some(qweight) = raw.get(&qweight_name) else {
        return Ok(None);
    };
    let (n_out, n_in) = (layer.out_features, layer.in_features);
    if n_out % 8 != 0 || n_in % cfg.group_size != 0 {
        return Err(EngineError::bad_file(
            raw.file_of(&qweight_name),
            format!(
                "tensor `{qweight_name}`: {n_out} outputs and {n_in} inputs do not fit AWQ's layout with group_size {}",
                cfg.group_size
            ),
        ));
    }
    let groups = n_in / cfg.group_size;
    let why = format!("AWQ layer `{p}`");
    qweight.expect_shape(&[n_in, n_out / 8], "config.json")?;
    let qzeros = raw.need(&format!("{p}.qzeros"), &why)?;
    qzeros.expect_shape(&[groups, n_out / 8], "group_size")?;
    let scales = raw.need(&format!("{p}.scales"), &why)?;
    scales.expect_shape(&[groups, n_out], "group_size")?;
    Ok(Some(PackedWeight {
        out_features: n_out,
        in_features: n_in,
        codes: Codes::Awq {
            qweight: qweight.words()?,
            qzeros: qzeros.words()?,
            scales: scales.floats()?,
            group_size: cfg.group_size,
        },
        round_to: RoundTo::of(scales.dtype),
        sparse24: None,
        act: None,
        stored_bytes: (qweight.data.len() + qzeros.data.len() + scales.data.len()) as u64,
    }))
}
