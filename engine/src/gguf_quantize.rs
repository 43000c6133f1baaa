//! `llama-quantize` in the engine: a GGUF model (an f32/f16 file, or a converted HF
//! checkpoint) quantized to one of llama.cpp's file types, writing what `llama-quantize`
//! writes for it: the same tensor types ([`crate::ggml::recipe`]), the same blocks
//! ([`crate::ggml::quantize`]), the same metadata (the input's, then
//! `general.quantization_version`, `general.file_type` and, with an importance matrix, the
//! `quantize.imatrix.*` keys the `llama-quantize` tool records), in the same order.

use std::borrow::Cow;
use std::path::Path;

use compsafe_core::{GgufFtype, GgufType};

use crate::error::{EngineError, Result};
use crate::ggml::file::{set_kv, GgufFile, OutTensor, Value};
use crate::ggml::imatrix::Imatrix;
use crate::ggml::recipe::{self, llama_order, RecipeModel, RecipeTensor};
use crate::ggml::{dequantize, quantize, GgmlType};
use crate::gguf_write::{write_model, GgufModel, Written};

/// What to quantize to.
#[derive(Debug, Clone)]
pub struct QuantizeRequest {
    /// llama.cpp's file type.
    pub ftype: GgufFtype,
    /// Every quantizable tensor in the file type's default type (`--pure`).
    pub pure: bool,
    /// One block type for every quantizable tensor, overriding the file type's (a one-type
    /// variant; `general.file_type` is then the file type named in `ftype`).
    pub only: Option<GgmlType>,
    /// The importance matrix and how the file records it (`quantize.imatrix.file`).
    pub imatrix: Option<(Imatrix, String)>,
}

impl QuantizeRequest {
    /// llama.cpp's recipe for `ftype`.
    pub fn recipe(ftype: GgufFtype) -> QuantizeRequest {
        QuantizeRequest {
            ftype,
            pure: false,
            only: None,
            imatrix: None,
        }
    }

    /// Every quantizable tensor in `ty` (as `llama-quantize --pure` with that default type).
    pub fn one_type(ty: GgufType) -> QuantizeRequest {
        let candidates: Vec<GgufFtype> = GgufFtype::ALL
            .into_iter()
            .filter(|f| f.default_type() == ty)
            .collect();
        let ftype = candidates
            .iter()
            .find(|f| f.name().ends_with("_m"))
            .or(candidates.first())
            .copied()
            .unwrap_or(GgufFtype::Q8_0);
        QuantizeRequest {
            ftype,
            pure: true,
            only: Some(GgmlType::of(ty)),
            imatrix: None,
        }
    }
}

/// The recipe's view of a model's hyper-parameters, from its metadata.
fn recipe_model(kv: &[(String, Value)]) -> Result<RecipeModel> {
    let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let arch = get("general.architecture")
        .and_then(Value::as_str)
        .ok_or_else(|| EngineError::Invalid("metadata `general.architecture` missing".into()))?
        .to_string();
    let u = |k: &str| -> Result<usize> {
        get(&format!("{arch}.{k}"))
            .and_then(Value::as_i64)
            .map(|v| v as usize)
            .ok_or_else(|| EngineError::Invalid(format!("metadata `{arch}.{k}` missing")))
    };
    let n_layer = u("block_count")?;
    let n_head = u("attention.head_count")?;
    let n_head_kv = u("attention.head_count_kv").unwrap_or(n_head);
    let n_expert = u("expert_count").unwrap_or(0);
    let is_70b = n_layer == 80 && (arch == "qwen2" || (arch == "llama" && n_head != n_head_kv));
    Ok(RecipeModel {
        n_layer,
        n_head,
        n_head_kv,
        n_expert,
        is_70b,
    })
}

fn f32_values(t: &OutTensor<'_>) -> Result<Vec<f32>> {
    let n = t.ne.iter().product::<u64>() as usize;
    dequantize(t.ty, &t.data, n)
        .map_err(|e| EngineError::Invalid(format!("tensor `{}`: {e}", t.name)))
}

/// Quantizes `src` as `llama-quantize` does for `req`.
pub fn quantize_model(src: &GgufModel, req: &QuantizeRequest) -> Result<GgufModel> {
    let m = recipe_model(&src.kv)?;
    let mut order: Vec<&OutTensor<'_>> = src.tensors.iter().collect();
    order.sort_by(|a, b| llama_order(&a.name, &b.name));
    let rt: Vec<RecipeTensor> = order
        .iter()
        .map(|t| RecipeTensor {
            name: t.name.clone(),
            ne: t.ne.clone(),
            current: t.ty,
        })
        .collect();
    let has_imatrix = req.imatrix.is_some();
    let types: Vec<GgmlType> = match req.only {
        Some(ty) => rt
            .iter()
            .map(|t| {
                if recipe::allows_quantization(&t.name, t.ne.len()) {
                    recipe::fallback(ty, t.ne[0])
                } else {
                    t.current
                }
            })
            .collect(),
        None => recipe::tensor_types(&m, req.ftype, req.pure, has_imatrix, &rt),
    };
    let mut tensors = Vec::with_capacity(order.len());
    for (t, &ty) in order.iter().zip(&types) {
        if ty == t.ty {
            tensors.push(OutTensor {
                name: t.name.clone(),
                ne: t.ne.clone(),
                ty,
                data: Cow::Owned(t.data.to_vec()),
            });
            continue;
        }
        let needs = recipe::requires_imatrix(&t.name, ty, req.ftype);
        let ne0 = t.ne[0] as usize;
        let imat: Option<Vec<f32>> = match &req.imatrix {
            Some((im, _)) => match im.importance(&t.name) {
                Some(v) if v.len() == ne0 => Some(v),
                Some(v) if t.name != "token_embd.weight" => {
                    return Err(EngineError::Invalid(format!(
                        "imatrix size {} is different from tensor size {ne0} for {}",
                        v.len(),
                        t.name
                    )))
                }
                _ => None,
            },
            None => None,
        };
        if needs && imat.is_none() {
            return Err(EngineError::Invalid(format!(
                "tensor `{}` in {} needs an importance matrix (as llama-quantize insists for \
                 {}); give one with imatrix=FILE|SUITE",
                t.name,
                ty.name(),
                req.ftype.name()
            )));
        }
        let values = f32_values(t)?;
        let data = quantize(ty, &values, ne0, imat.as_deref()).map_err(|e| {
            EngineError::Invalid(format!("tensor `{}` to {}: {e}", t.name, ty.name()))
        })?;
        tensors.push(OutTensor {
            name: t.name.clone(),
            ne: t.ne.clone(),
            ty,
            data: Cow::Owned(data),
        });
    }
    let mut kv = src.kv.clone();
    set_kv(&mut kv, "general.quantization_version", Value::U32(2));
    set_kv(&mut kv, "general.file_type", Value::U32(req.ftype.id()));
    kv.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "split.no" | "split.count" | "split.tensors.count"
        )
    });
    if let Some((im, file)) = &req.imatrix {
        set_kv(
            &mut kv,
            "quantize.imatrix.file",
            Value::String(truncate127(file)),
        );
        if let Some(d) = im.datasets.first() {
            set_kv(
                &mut kv,
                "quantize.imatrix.dataset",
                Value::String(truncate127(d)),
            );
        }
        set_kv(
            &mut kv,
            "quantize.imatrix.entries_count",
            Value::U32(im.entries.len() as u32),
        );
        if im.chunk_count > 0 {
            set_kv(
                &mut kv,
                "quantize.imatrix.chunks_count",
                Value::U32(im.chunk_count),
            );
        }
    }
    Ok(GgufModel { kv, tensors })
}

/// `llama-quantize` copies string overrides into 128-byte buffers.
fn truncate127(s: &str) -> String {
    let mut end = s.len().min(127);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Reads a GGUF file into memory as a model (its tensors copied).
pub fn read_model(path: &Path) -> Result<GgufModel> {
    let bytes = crate::loader::map_file(path)?;
    let f = GgufFile::read(&bytes)
        .map_err(|e| EngineError::bad_file(path, format!("invalid GGUF: {e}")))?;
    let mut tensors = Vec::with_capacity(f.tensors.len());
    for t in &f.tensors {
        let data = f
            .data(&bytes, t)
            .map_err(|e| EngineError::bad_file(path, e))?;
        tensors.push(OutTensor {
            name: t.name.clone(),
            ne: t.ne.clone(),
            ty: t.ty,
            data: Cow::Owned(data.to_vec()),
        });
    }
    Ok(GgufModel { kv: f.kv, tensors })
}

/// `compsafe quantize`: an HF directory (converted as llama.cpp's converter does) or an
/// f32/f16 GGUF file, written to `out` as f32 (`req` = `None`) or quantized per `req`.
pub fn quantize_path(model: &Path, req: Option<&QuantizeRequest>, out: &Path) -> Result<Written> {
    let src = if model.is_dir() {
        crate::gguf_write::convert_hf(model)?
    } else {
        let m = read_model(model)?;
        for t in &m.tensors {
            if t.ty.is_quantized() && recipe::allows_quantization(&t.name, t.ne.len()) {
                return Err(EngineError::bad_file(
                    model,
                    format!(
                        "tensor `{}` is already {}: requantizing is refused, as llama-quantize \
                         does without --allow-requantize; start from an f32 or f16 file",
                        t.name, t.ty
                    ),
                ));
            }
        }
        m
    };
    match req {
        None => write_model(&src, out),
        Some(r) => write_model(&quantize_model(&src, r)?, out),
    }
}
