//! GGUF block quantization with llama.cpp's own quantizers ([`crate::ggml`]: the blocks are
//! byte-identical to `llama-quantize`'s), in two forms:
//!
//! - [`Gguf`] (`gguf:q4k`, `gguf:iq4xs`, ...): one block type on the selected tensors (the
//!   decoder's linear weights by default);
//! - [`GgufRecipe`] (`gguf:q4_k_m`, `gguf:q8_0`, `gguf:iq4_xs:imatrix=...`): llama.cpp's file
//!   type over the whole model, every tensor in the type `llama-quantize` gives it (token
//!   embedding and output projection included), with or without an importance matrix.
//!
//! Types candle executes are stored as [`LinearWeight::Quantized`] (candle's quantized matmul,
//! activations quantized to Q8 as llama.cpp does); the others (i-quants, TQ1_0, TQ2_0) as
//! [`LinearWeight::Blocks`], multiplied by decoding their blocks. A quantized token
//! embedding is looked up from its dequantized values. The relative error is computed from
//! the dequantized tensor, and `bytes` is the size of the block storage.
//!
//! Rows that a block type does not divide fall back as `llama-quantize` does
//! (`tensor_type_fallback`, [`crate::ggml::recipe::fallback`]): Q2_K/Q3_K/TQ -> Q4_0, Q4_K ->
//! Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, 256-block i-quants -> IQ4_NL, else f16 (kept dense).
//! Each fallback is recorded in [`TensorStat::note`].

use std::sync::Arc;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use compsafe_core::{GgufFtype, GgufType};

use super::{
    f32_values, par_map, relative_error, rows_cols, selected_names, Compressed, Compressor,
    HeadLayout, LinearWeight, TensorStat, WeightMap,
};
use crate::error::{EngineError, Result};
use crate::ggml::imatrix::Imatrix;
use crate::ggml::recipe::{self, RecipeModel, RecipeTensor};
use crate::ggml::{dequantize, quantize, BlockTensor, GgmlType};
use crate::gguf_write::hf_to_gguf_name;

/// candle's dtype for a GGUF type it executes.
pub fn ggml_dtype(ty: GgufType) -> Option<GgmlDType> {
    GgmlType::of(ty).candle()
}

/// The storage a row of `cols` values gets when `ty` is asked for, as `llama-quantize`
/// decides it: `ty` itself, its fallback, or f16.
pub fn storage_for(ty: GgufType, cols: usize) -> GgmlType {
    match ty {
        // llama.cpp never writes Q8_K; its 32-block relative is Q8_0.
        GgufType::Q8K if !cols.is_multiple_of(256) => recipe::fallback(GgmlType::Q8_0, cols as u64),
        _ => recipe::fallback(GgmlType::of(ty), cols as u64),
    }
}

/// A weight stored in `ty` from its blocks: candle's quantized tensor when candle executes
/// the type, else a block matrix.
pub fn block_weight(
    ty: GgmlType,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
    device: &Device,
) -> Result<LinearWeight> {
    Ok(match ty.candle() {
        // candle reads no Q8_K blocks from bytes; it quantizes the values with the same rule.
        Some(GgmlDType::Q8K) => {
            let values = dequantize(ty, &data, rows * cols)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
            let t = Tensor::from_vec(values, (rows, cols), device)?;
            LinearWeight::Quantized(Arc::new(candle_core::quantized::QTensor::quantize(
                &t,
                GgmlDType::Q8K,
            )?))
        }
        Some(dt) => LinearWeight::Quantized(Arc::new(qtensor_from_ggml(
            dt,
            &data,
            vec![rows, cols],
            device,
        )?)),
        None => LinearWeight::Blocks(Arc::new(BlockTensor::new(ty, rows, cols, data, device)?)),
    })
}

/// One tensor quantized to `ty` (f16 kept dense): its weight, dequantized values and bytes.
fn quantize_tensor(
    name: &str,
    w: &Tensor,
    ty: GgmlType,
    imatrix: Option<&[f32]>,
) -> Result<(LinearWeight, Vec<f32>, u64)> {
    let (rows, cols) = rows_cols(name, w)?;
    let values = f32_values(name, w)?;
    if ty == GgmlType::F16 {
        let half = w.to_dtype(DType::F16)?;
        let back = f32_values(name, &half)?;
        return Ok((LinearWeight::Dense(half), back, (rows * cols * 2) as u64));
    }
    let data = quantize(ty, &values, cols, imatrix)
        .map_err(|e| EngineError::Invalid(format!("tensor `{name}` to {ty}: {e}")))?;
    let deq =
        dequantize(ty, &data, values.len()).map_err(|e| EngineError::Invalid(e.to_string()))?;
    let bytes = data.len() as u64;
    Ok((block_weight(ty, rows, cols, data, w.device())?, deq, bytes))
}

fn stat(
    name: &str,
    reference: &[f32],
    deq: &[f32],
    bytes: u64,
    note: Option<String>,
) -> TensorStat {
    let numel = reference.len();
    TensorStat {
        name: name.to_string(),
        rel_error: relative_error(reference, deq),
        bits_per_weight: bytes as f64 * 8.0 / numel.max(1) as f64,
        numel,
        bytes,
        note,
    }
}

/// One GGUF block type on the selected tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gguf {
    ty: GgufType,
}

impl Gguf {
    /// Quantization to `ty`.
    pub fn new(ty: GgufType) -> Gguf {
        Gguf { ty }
    }

    fn quantize_one(
        &self,
        label: &str,
        name: &str,
        w: &Tensor,
    ) -> Result<(TensorStat, LinearWeight)> {
        if w.rank() != 2 {
            return Err(EngineError::Invalid(format!(
                "{label}: tensor `{name}` has shape {:?}; GGUF quantization applies to 2-D \
                 linear weights [out, in]",
                w.dims()
            )));
        }
        let (_, cols) = rows_cols(name, w)?;
        let reference = f32_values(name, w)?;
        let ty = storage_for(self.ty, cols);
        let asked = GgmlType::of(self.ty);
        let (weight, deq, bytes) = quantize_tensor(name, w, ty, None)?;
        let note = (ty != asked).then(|| {
            if ty == GgmlType::F16 {
                format!("rows of {cols} not divisible by 32: kept in f16 (as llama.cpp does for unusual shapes)")
            } else {
                format!(
                    "rows of {cols} not divisible by {} ({}): stored as {} as llama.cpp does",
                    asked.block_size(),
                    asked.name(),
                    ty.name()
                )
            }
        });
        Ok((stat(name, &reference, &deq, bytes, note), weight))
    }
}

impl Compressor for Gguf {
    fn compress(
        &self,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
        _layout: &HeadLayout,
    ) -> Result<Compressed> {
        let label = format!("gguf:{}", self.ty.short_name());
        let names = selected_names(weights, selected, &label)?;
        let results = par_map(&names, |name| {
            self.quantize_one(&label, name, &weights[*name])
        });
        let mut out = Compressed::default();
        for r in results {
            let (stat, weight) = r?;
            out.weights.insert(stat.name.clone(), weight);
            out.stats.push(stat);
        }
        Ok(out)
    }
}

/// llama.cpp's file type over the whole model, as `llama-quantize` writes it.
#[derive(Debug, Clone)]
pub struct GgufRecipe {
    ftype: GgufFtype,
    pure: bool,
    imatrix: Option<Arc<Imatrix>>,
}

impl GgufRecipe {
    /// `ftype`'s recipe (every quantizable tensor in its default type when `pure`), with an
    /// importance matrix keyed by GGUF tensor names when given.
    pub fn new(ftype: GgufFtype, pure: bool, imatrix: Option<Arc<Imatrix>>) -> GgufRecipe {
        GgufRecipe {
            ftype,
            pure,
            imatrix,
        }
    }

    fn label(&self) -> String {
        format!("gguf:{}", self.ftype.name())
    }
}

impl Compressor for GgufRecipe {
    fn compress(
        &self,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
        layout: &HeadLayout,
    ) -> Result<Compressed> {
        let label = self.label();
        // A recipe assigns types by llama.cpp's tensor names: a selected matrix without one
        // (fused projections, experts) would silently stay unquantized.
        if let Some(n) = weights
            .iter()
            .find(|(n, t)| t.rank() == 2 && selected(n) && hf_to_gguf_name(n).is_none())
            .map(|(n, _)| n)
        {
            return Err(EngineError::Invalid(format!(
                "{label}: llama.cpp's file-type recipes are applied to Llama-layout tensors; \
                 `{n}` has no such name (fused projections and experts): use one block type \
                 for every tensor instead, e.g. gguf:q4k or gguf:q80"
            )));
        }
        // The model's tensors under their GGUF names, in llama.cpp's order.
        let mut items: Vec<(String, &str, &Tensor)> = weights
            .iter()
            .filter_map(|(n, t)| hf_to_gguf_name(n).map(|g| (g, n.as_str(), t)))
            .collect();
        items.sort_by(|a, b| recipe::llama_order(&a.0, &b.0));
        let rt: Vec<RecipeTensor> = items
            .iter()
            .map(|(g, _, t)| RecipeTensor {
                name: g.clone(),
                ne: t.dims().iter().rev().map(|&d| d as u64).collect(),
                current: GgmlType::F32,
            })
            .collect();
        let m = RecipeModel {
            n_layer: layout.num_layers,
            n_head: layout.num_heads,
            n_head_kv: layout.num_kv_heads,
            n_expert: 0,
            is_70b: layout.num_layers == 80 && layout.num_heads != layout.num_kv_heads,
        };
        let types = recipe::tensor_types(&m, self.ftype, self.pure, self.imatrix.is_some(), &rt);
        let tied = !weights.contains_key("lm_head.weight");
        let jobs: Vec<(usize, GgmlType)> = types
            .iter()
            .enumerate()
            .filter(|(i, ty)| **ty != GgmlType::F32 && selected(items[*i].1))
            .map(|(i, ty)| (i, *ty))
            .collect();
        if jobs.is_empty() {
            return Err(EngineError::Invalid(format!(
                "{label}: no tensor of the model is quantized by this variant"
            )));
        }
        let results = par_map(
            &jobs,
            |&(i, ty)| -> Result<(usize, TensorStat, LinearWeight)> {
                let (gname, hf, w) = &items[i];
                let imat = match &self.imatrix {
                    Some(im) => match im.importance(gname) {
                        Some(v) if v.len() == w.dims()[w.rank() - 1] => Some(v),
                        Some(v) if gname != "token_embd.weight" => {
                            return Err(EngineError::Invalid(format!(
                            "{label}: imatrix size {} is different from tensor size {} for {gname}",
                            v.len(),
                            w.dims()[w.rank() - 1]
                        )))
                        }
                        _ => None,
                    },
                    None => None,
                };
                if imat.is_none() && recipe::requires_imatrix(gname, ty, self.ftype) {
                    return Err(EngineError::Invalid(format!(
                        "{label}: tensor `{gname}` in {ty} needs an importance matrix (as \
                     llama-quantize insists); add imatrix=FILE or imatrix=SUITE"
                    )));
                }
                let reference = f32_values(hf, w)?;
                let (weight, deq, bytes) = quantize_tensor(hf, w, ty, imat.as_deref())?;
                let note = Some(format!("{gname}: {ty}"));
                Ok((i, stat(hf, &reference, &deq, bytes, note), weight))
            },
        );
        let mut out = Compressed::default();
        for r in results {
            let (i, st, weight) = r?;
            let hf = items[i].1;
            if hf == "model.embed_tokens.weight" {
                // The lookup table is the dequantized embedding; a tied output projection
                // multiplies the stored blocks.
                let (rows, cols) = rows_cols(hf, items[i].2)?;
                let deq = match &weight {
                    LinearWeight::Dense(t) => t.to_dtype(DType::F32)?,
                    LinearWeight::Quantized(q) => q.dequantize(items[i].2.device())?,
                    LinearWeight::Blocks(b) => b.to_tensor(items[i].2.device())?,
                    LinearWeight::Observed(..) | LinearWeight::Packed(_) => {
                        return Err(EngineError::Invalid(format!(
                            "{label}: `{hf}` is not a stored weight"
                        )))
                    }
                };
                out.weights.insert(
                    hf.to_string(),
                    LinearWeight::Dense(deq.reshape((rows, cols))?),
                );
                if tied {
                    out.weights.insert("lm_head.weight".to_string(), weight);
                }
            } else {
                out.weights.insert(hf.to_string(), weight);
            }
            out.stats.push(st);
        }
        out.stats.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
