//! Static KV-cache scales (`kv:fp8`, `kv:int8`): the keys (after the rotary embedding) and
//! values of every layer over the calibration sequences, one symmetric scale per layer for
//! each, as compressed-tensors' `kv_cache_scheme` stores them (`k_scale`, `v_scale`) and
//! [`KvQuant`] applies them.
//!
//! As llm-compressor's default `minmax` observer: each calibration sequence is one
//! observation; the minimum and the maximum are moving averages over them (`lerp` with
//! weight 0.01, the first sequence's values to start), and the scale is
//! `max(|min|, |max|) / 448` (FP8 E4M3) or `/ 127.5` (int8).

use candle_core::{DType, Tensor};
use compsafe_core::calibrated::KvQuant as KvType;

use super::CalibTokens;
use crate::error::Result;
use crate::formats::KvQuant;
use crate::model::{KvCache, Model};
use crate::quant::act::ActType;

/// `(min, max)` of each sequence (batch row) of a `[batch, ...]` tensor.
fn row_min_max(t: &Tensor) -> Result<Vec<(f32, f32)>> {
    let b = t.dim(0)?;
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let n = v.len() / b.max(1);
    Ok(v.chunks(n.max(1))
        .map(|r| {
            r.iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                })
        })
        .collect())
}

/// torch's `lerp(a, b, w)` in f32.
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if w < 0.5 {
        a + w * (b - a)
    } else {
        b - (b - a) * (1.0 - w)
    }
}

/// The moving-average minimum and maximum of one tensor's observations.
#[derive(Debug, Clone, Copy, Default)]
struct Observer(Option<(f32, f32)>);

impl Observer {
    fn observe(&mut self, (lo, hi): (f32, f32)) {
        self.0 = Some(match self.0 {
            None => (lo, hi),
            Some((a, b)) => (lerp(a, lo, AVERAGING), lerp(b, hi, AVERAGING)),
        });
    }

    fn scale(self, ty: ActType) -> f32 {
        let (lo, hi) = self.0.unwrap_or_default();
        ty.dynamic_scale(lo.min(0.0).abs().max(hi.max(0.0)))
    }
}

/// llm-compressor's `averaging_constant`.
const AVERAGING: f32 = 0.01;

/// The per-layer key and value scales of `model` over `tokens`, `batch` sequences a pass.
pub fn scales(model: &Model, tokens: &CalibTokens, batch: usize, kind: KvType) -> Result<KvQuant> {
    let layers = model.config.num_layers;
    let ty = match kind {
        KvType::Fp8 => ActType::Fp8E4m3,
        KvType::Int8 => ActType::Int8,
    };
    let len = tokens.check(model.config.vocab_size)?;
    let (mut k, mut v) = (
        vec![Observer::default(); layers],
        vec![Observer::default(); layers],
    );
    for chunk in tokens.seqs.chunks(batch.max(1)) {
        let b = chunk.len();
        let flat: Vec<u32> = chunk.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (b, len), model.device())?;
        let pos: Vec<Vec<i64>> = vec![(0..len as i64).collect(); b];
        let positions = Tensor::from_vec(
            pos.iter().flatten().map(|&p| p as u32).collect::<Vec<_>>(),
            (b, len),
            model.device(),
        )?;
        let mask = model.mask(&pos, &pos)?;
        let mut cache = KvCache::new(layers);
        model.forward_hidden(&ids, &positions, &mask, &mut cache)?;
        for l in 0..layers {
            if let Some((kt, vt)) = cache.layer(l) {
                for (ko, vo) in row_min_max(kt)?.into_iter().zip(row_min_max(vt)?) {
                    k[l].observe(ko);
                    v[l].observe(vo);
                }
            }
        }
    }
    Ok(KvQuant {
        ty,
        k_scales: k.into_iter().map(|o| o.scale(ty)).collect(),
        v_scales: v.into_iter().map(|o| o.scale(ty)).collect(),
    })
}
