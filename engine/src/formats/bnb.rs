//! bitsandbytes checkpoints as transformers saves them (`quant_method = "bitsandbytes"`).
//!
//! - 4-bit (`load_in_4bit`, NF4 or FP4): per layer `P`, `P.weight` uint8 `[n / 2, 1]` (two
//!   codes per byte over the row-major weight, the first in the high nibble), `P.weight.absmax`
//!   (f32 per block of `blocksize`, or uint8 codes with double quantization),
//!   `P.weight.quant_map` (the 16-value table), with double quantization
//!   `P.weight.nested_absmax` and `P.weight.nested_quant_map`, and the JSON blob
//!   `P.weight.quant_state.bitsandbytes__nf4` (or `__fp4`) with `quant_type`, `blocksize`,
//!   `dtype`, `shape` and the nested `nested_blocksize`, `nested_offset`.
//!   `w = table[code] * absmax[block]`, where double quantization stores
//!   `absmax = nested_quant_map[c] * nested_absmax[c_block] + nested_offset`, all in f32,
//!   then cast to `dtype`.
//! - 8-bit (`load_in_8bit`, LLM.int8): `P.weight` int8 `[out, in]` and `P.SCB` f32 `[out]`;
//!   `w = q * SCB / 127`.

use serde_json::Value;

use super::json::Fields;
use super::packed::{Codes, PackedWeight, RoundTo};
use super::tensors::{RawTensor, RawTensors};
use super::Layer;
use crate::error::{EngineError, Result};
use crate::quant::bnb::{self, FourBit};

/// bitsandbytes settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BnbConfig {
    /// 4-bit (NF4/FP4) rather than LLM.int8.
    pub four_bit: bool,
    /// The 4-bit type named in the config.
    pub quant_type: FourBit,
    /// Double quantization of the absmax values.
    pub double_quant: bool,
    /// LLM.int8's outlier threshold (`llm_int8_threshold`, default 6).
    pub threshold: f32,
}

impl BnbConfig {
    /// Parses `quantization_config`.
    pub fn parse(f: &Fields) -> Result<BnbConfig> {
        let four = f.bool_opt("load_in_4bit")?.unwrap_or(false);
        let eight = f.bool_opt("load_in_8bit")?.unwrap_or(false);
        if four == eight {
            return Err(f.err(
                "load_in_4bit",
                format!("= {four} with load_in_8bit = {eight}: exactly one must be true"),
            ));
        }
        let quant_type = match f.str_opt("bnb_4bit_quant_type")?.unwrap_or("fp4") {
            "nf4" => FourBit::Nf4,
            "fp4" => FourBit::Fp4,
            other => {
                return Err(f.err(
                    "bnb_4bit_quant_type",
                    format!("= {other:?}: expected \"nf4\" or \"fp4\""),
                ))
            }
        };
        if let Some(s) = f.str_opt("bnb_4bit_quant_storage")? {
            if s != "uint8" {
                return Err(f.err(
                    "bnb_4bit_quant_storage",
                    format!("= {s:?}: only uint8 storage is supported"),
                ));
            }
        }
        Ok(BnbConfig {
            four_bit: four,
            quant_type,
            double_quant: f.bool_opt("bnb_4bit_use_double_quant")?.unwrap_or(false),
            threshold: match f.get("llm_int8_threshold") {
                None => 6.0,
                Some(v) => v.as_f64().filter(|t| *t >= 0.0).ok_or_else(|| {
                    f.err(
                        "llm_int8_threshold",
                        format!("= {v}: expected a non-negative number"),
                    )
                })? as f32,
            },
        })
    }

    /// The method as written in reports (`bnb:nf4:dq`, `bnb:int8`).
    pub fn method(&self) -> String {
        if self.four_bit {
            format!(
                "bnb:{}{}",
                self.quant_type.name(),
                if self.double_quant { ":dq" } else { "" }
            )
        } else {
            "bnb:int8".into()
        }
    }
}

fn bad(t: &RawTensor, what: impl std::fmt::Display) -> EngineError {
    EngineError::bad_file(&t.file, format!("tensor `{}`: {what}", t.name))
}

/// Decodes layer `layer` if the checkpoint stores it bitsandbytes-quantized.
pub fn decode(cfg: &BnbConfig, raw: &RawTensors, layer: &Layer) -> Result<Option<PackedWeight>> {
    let p = &layer.prefix;
    let Some(weight) = raw.get(&format!("{p}.weight")) else {
        return Ok(None);
    };
    let (n_out, n_in) = (layer.out_features, layer.in_features);
    if !cfg.four_bit {
        if weight.dtype != safetensors::Dtype::I8 {
            return Ok(None);
        }
        weight.expect_shape(&[n_out, n_in], "config.json")?;
        let scb = raw.need(&format!("{p}.SCB"), "LLM.int8 row scales")?;
        scb.expect_shape(&[n_out], "the layer's output features")?;
        let mut bytes = (weight.data.len() + scb.data.len()) as u64;
        if let Some(f) = raw.get(&format!("{p}.weight_format")) {
            let v = f.ints().or_else(|_| {
                f.bytes_u8()
                    .map(|b| b.iter().map(|&x| i64::from(x)).collect())
            })?;
            if v.first().copied().unwrap_or(0) != 0 {
                return Err(bad(
                    f,
                    format!(
                        "field weight_format = {:?}: only the row format (0) is supported",
                        v
                    ),
                ));
            }
            bytes += f.data.len() as u64;
        }
        return Ok(Some(PackedWeight {
            out_features: n_out,
            in_features: n_in,
            codes: Codes::Int8Rows {
                codes: weight.bytes_i8()?,
                scb: scb.floats()?,
            },
            round_to: RoundTo::F32,
            sparse24: None,
            act: Some(super::packed::ActQuant::LlmInt8 {
                threshold: cfg.threshold,
            }),
            stored_bytes: bytes,
        }));
    }
    if weight.dtype != safetensors::Dtype::U8 {
        return Ok(None);
    }
    let n = n_out * n_in;
    let why = format!("bitsandbytes 4-bit layer `{p}`");
    let state_name = ["nf4", "fp4"]
        .iter()
        .map(|t| format!("{p}.weight.quant_state.bitsandbytes__{t}"))
        .find(|n| raw.get(n).is_some())
        .ok_or_else(|| {
            EngineError::bad_file(
                raw.file_of(&weight.name),
                format!("tensor `{p}.weight.quant_state.bitsandbytes__nf4` is missing ({why})"),
            )
        })?;
    let state_t = raw.need(&state_name, &why)?;
    let state: Value = serde_json::from_slice(state_t.bytes_u8()?)
        .map_err(|e| bad(state_t, format!("field quant_state is not JSON: {e}")))?;
    let sf = Fields {
        file: &state_t.file,
        at: state_name.to_string(),
        value: &state,
    };
    let ty = match sf.str_opt("quant_type")? {
        Some("nf4") => FourBit::Nf4,
        Some("fp4") => FourBit::Fp4,
        other => {
            return Err(sf.err(
                "quant_type",
                format!("= {other:?}: expected \"nf4\" or \"fp4\""),
            ))
        }
    };
    let blocksize = sf.u64_opt("blocksize")?.unwrap_or(64) as usize;
    if blocksize == 0 {
        return Err(sf.err("blocksize", "= 0"));
    }
    let shape: Vec<u64> = sf
        .need("shape")?
        .as_array()
        .and_then(|a| a.iter().map(Value::as_u64).collect())
        .ok_or_else(|| sf.err("shape", "expected a list of sizes"))?;
    if shape != [n_out as u64, n_in as u64] {
        return Err(sf.err(
            "shape",
            format!("= {shape:?}, but config.json implies [{n_out}, {n_in}]"),
        ));
    }
    let round_to = match sf.str_opt("dtype")?.unwrap_or("float32") {
        "float32" => RoundTo::F32,
        "float16" => RoundTo::F16,
        "bfloat16" => RoundTo::Bf16,
        other => {
            return Err(sf.err(
                "dtype",
                format!("= {other:?}: expected float32, float16 or bfloat16"),
            ))
        }
    };
    weight.expect_shape(&[n.div_ceil(2), 1], "the quant_state shape")?;
    let blocks = n.div_ceil(blocksize);
    let map = raw.need(&format!("{p}.weight.quant_map"), &why)?;
    let table = map.floats()?;
    if table.as_slice() != ty.table().as_slice() {
        return Err(bad(
            map,
            format!("field quant_map is not bitsandbytes' {} table", ty.name()),
        ));
    }
    let absmax_t = raw.need(&format!("{p}.weight.absmax"), &why)?;
    absmax_t.expect_shape(&[blocks], "blocksize")?;
    let mut bytes =
        (weight.data.len() + absmax_t.data.len() + map.data.len() + state_t.data.len()) as u64;
    let absmax = if absmax_t.dtype == safetensors::Dtype::U8 {
        let nested = raw.need(&format!("{p}.weight.nested_absmax"), "double quantization")?;
        let nmap = raw.need(
            &format!("{p}.weight.nested_quant_map"),
            "double quantization",
        )?;
        nmap.expect_shape(&[256], "the 8-bit dynamic map")?;
        let nb = sf.u64_opt("nested_blocksize")?.unwrap_or(256) as usize;
        if nb == 0 {
            return Err(sf.err("nested_blocksize", "= 0"));
        }
        nested.expect_shape(&[blocks.div_ceil(nb)], "nested_blocksize")?;
        let offset = sf
            .get("nested_offset")
            .and_then(Value::as_f64)
            .ok_or_else(|| sf.err("nested_offset", "missing"))? as f32;
        bytes += (nested.data.len() + nmap.data.len()) as u64;
        bnb::dequantize_blockwise(absmax_t.bytes_u8()?, &nested.floats()?, &nmap.floats()?, nb)
            .into_iter()
            .map(|a| a + offset)
            .collect()
    } else {
        absmax_t.floats()?
    };
    let mut tab = [0f32; 16];
    tab.copy_from_slice(ty.table());
    Ok(Some(PackedWeight {
        out_features: n_out,
        in_features: n_in,
        codes: Codes::Bnb4 {
            packed: weight.bytes_u8()?.to_vec(),
            absmax,
            blocksize,
            table: tab,
        },
        round_to,
        sparse24: None,
        act: None,
        stored_bytes: bytes,
    }))
}
