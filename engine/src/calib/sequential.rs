//! Layer-by-layer ("true sequential") calibration: capture one decoder layer's input
//! statistics, compress that layer, then compute the hidden states the next layer reads.

use candle_core::Tensor;

use super::capture::{capture_layer, LayerStats, Wants};
use crate::compress::{Compressed, HeadLayout, WeightMap};
use crate::error::{EngineError, Result};
use crate::loader::Checkpoint;
use crate::model::{LinearSite, Model};

/// Calibration token sequences, all of one length, each starting at position 0 (no padding,
/// causal attention), in the order they are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalibTokens {
    /// The sequences.
    pub seqs: Vec<Vec<u32>>,
}

impl CalibTokens {
    /// Checks that there is at least one sequence, that all have one non-zero length and
    /// that every id is inside the vocabulary.
    pub fn check(&self, vocab: usize) -> Result<usize> {
        let Some(first) = self.seqs.first() else {
            return Err(EngineError::Invalid(
                "calibration: no calibration sequences".into(),
            ));
        };
        let len = first.len();
        if len == 0 {
            return Err(EngineError::Invalid(
                "calibration: sequences are empty".into(),
            ));
        }
        for (i, s) in self.seqs.iter().enumerate() {
            if s.len() != len {
                return Err(EngineError::Invalid(format!(
                    "calibration: sequence {i} has {} tokens, sequence 0 has {len}",
                    s.len()
                )));
            }
            if let Some(t) = s.iter().find(|&&t| t as usize >= vocab) {
                return Err(EngineError::Invalid(format!(
                    "calibration: sequence {i} holds token id {t}, outside the vocabulary of {vocab}"
                )));
            }
        }
        Ok(len)
    }
}

/// What a [`LayerCompressor`] sees of the layer it compresses.
#[derive(Debug)]
pub struct LayerContext<'a> {
    /// Decoder layer index.
    pub layer: usize,
    /// The model as calibration runs it: layers before `layer` compressed when the method
    /// propagates its own error, the reference otherwise.
    pub model: &'a Model,
    /// The layer's input hidden states, one `[batch, seq, hidden]` tensor per batch.
    pub inputs: &'a [Tensor],
    /// The statistics of the layer's linear inputs.
    pub stats: &'a LayerStats,
    /// Head layout of the model.
    pub layout: &'a HeadLayout,
}

/// One selected linear weight of the layer being compressed, with its values in f32.
pub struct LayerMatrix<'w> {
    /// Where it sits in the layer.
    pub site: LinearSite,
    /// Its HF weight name.
    pub name: String,
    /// The weight as given.
    pub tensor: &'w Tensor,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// Row-major f32 values.
    pub values: Vec<f32>,
}

impl LayerContext<'_> {
    /// The layer's linear weights that `selected` picks (those `weights` holds), in the
    /// order the forward pass reaches them.
    pub fn matrices<'w>(
        &self,
        weights: &'w WeightMap,
        selected: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<LayerMatrix<'w>>> {
        let mut out = Vec::new();
        for site in LinearSite::ALL {
            let name = site.weight_name(self.layer);
            let Some(tensor) = weights.get(&name).filter(|_| selected(&name)) else {
                continue;
            };
            let (rows, cols) = tensor.dims2()?;
            let values = crate::compress::f32_values(&name, tensor)?;
            out.push(LayerMatrix {
                site,
                name,
                tensor,
                rows,
                cols,
                values,
            });
        }
        Ok(out)
    }
}

/// A compression method that needs calibration statistics, applied one decoder layer at a
/// time.
pub trait LayerCompressor: Send + Sync {
    /// The statistics it reads.
    fn wants(&self) -> Wants;

    /// Whether the next layer is calibrated on this layer's compressed output (GPTQ,
    /// SparseGPT and Wanda in llm-compressor's sequential pipeline) rather than on the
    /// reference's (AWQ and SmoothQuant, which only rescale).
    fn propagates(&self) -> bool;

    /// Compresses the selected tensors of one decoder layer. `weights` holds the layer's
    /// current tensors by HF name (the reference's, or an earlier method's output in a
    /// chain). Returns replacements (linear weights, and for methods that fold scales into
    /// them, norm weights) with per-tensor stats against `weights`.
    fn compress_layer(
        &self,
        ctx: &LayerContext<'_>,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
    ) -> Result<Compressed>;
}

/// Runs `compressor` over every decoder layer of `ckpt`, calibrated on `tokens` fed
/// `batch` sequences at a time. Returns the replacements of every layer.
pub fn calibrate(
    ckpt: &Checkpoint,
    tokens: &CalibTokens,
    batch: usize,
    compressor: &dyn LayerCompressor,
    selected: &dyn Fn(&str) -> bool,
) -> Result<Compressed> {
    let seq_len = tokens.check(ckpt.config.vocab_size)?;
    let arch = &ckpt.config.arch_params;
    if arch.fused_qkv || arch.fused_gate_up || arch.moe.is_some() {
        return Err(EngineError::Invalid(format!(
            "calibrated compressors need separate projections in every layer; {:?} fuses them \
             or routes experts",
            ckpt.config.arch
        )));
    }
    let batch = batch.max(1);
    let mut model = Model::new(ckpt)?;
    let device = model.device().clone();
    let mut xs = Vec::new();
    for chunk in tokens.seqs.chunks(batch) {
        let ids: Vec<u32> = chunk.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(ids, (chunk.len(), seq_len), &device)?;
        xs.push(model.embed(&ids)?);
    }
    let layout = crate::variant::head_layout(ckpt);
    let mut out = Compressed::default();
    for layer in 0..ckpt.config.num_layers {
        let prefix = format!("model.layers.{layer}.");
        let weights: WeightMap = ckpt
            .weights
            .iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        let any = weights.keys().any(|n| selected(n));
        if !any {
            xs = xs
                .iter()
                .map(|x| model.layer_forward(layer, x, &mut |_, _, _| Ok(None)))
                .collect::<Result<_>>()?;
            continue;
        }
        let _span = tracing::info_span!("calibrate", layer).entered();
        let (stats, ref_outs) = capture_layer(&model, layer, &xs, compressor.wants())?;
        let ctx = LayerContext {
            layer,
            model: &model,
            inputs: &xs,
            stats: &stats,
            layout: &layout,
        };
        let c = compressor.compress_layer(&ctx, &weights, selected)?;
        drop(stats);
        if compressor.propagates() {
            for site in LinearSite::ALL {
                if let Some(w) = c.weights.get(&site.weight_name(layer)) {
                    model.set_linear(layer, site, w.clone())?;
                }
            }
            xs = xs
                .iter()
                .map(|x| model.layer_forward(layer, x, &mut |_, _, _| Ok(None)))
                .collect::<Result<_>>()?;
        } else {
            xs = ref_outs;
        }
        out.weights.extend(c.weights);
        out.stats.extend(c.stats);
    }
    Ok(out)
}

/// Methods applied one after the other to each layer (a pruner, then a quantizer that keeps
/// its zeros): every step sees the previous steps' output and the same calibration
/// statistics, collected once.
pub struct Chain {
    /// The steps, in order.
    pub steps: Vec<Box<dyn LayerCompressor>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chain({} steps)", self.steps.len())
    }
}

impl LayerCompressor for Chain {
    fn wants(&self) -> Wants {
        self.steps
            .iter()
            .fold(Wants::default(), |w, s| w.union(s.wants()))
    }

    fn propagates(&self) -> bool {
        self.steps.iter().any(|s| s.propagates())
    }

    fn compress_layer(
        &self,
        ctx: &LayerContext<'_>,
        weights: &WeightMap,
        selected: &dyn Fn(&str) -> bool,
    ) -> Result<Compressed> {
        let mut cur = weights.clone();
        let mut out = Compressed::default();
        for step in &self.steps {
            let c = step.compress_layer(ctx, &cur, selected)?;
            for (name, w) in &c.weights {
                if let crate::compress::LinearWeight::Dense(t) = w {
                    cur.insert(name.clone(), t.clone());
                }
            }
            for s in c.stats {
                match out.stats.iter_mut().find(|o| o.name == s.name) {
                    Some(o) => {
                        let note = match (o.note.take(), s.note.clone()) {
                            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                            (a, b) => a.or(b),
                        };
                        *o = crate::compress::TensorStat { note, ..s };
                    }
                    None => out.stats.push(s),
                }
            }
            out.weights.extend(c.weights);
        }
        for s in &mut out.stats {
            if let (Some(a), Some(b)) = (weights.get(&s.name), cur.get(&s.name)) {
                s.rel_error = crate::compress::tensor_relative_error(a, b)?;
            }
        }
        Ok(out)
    }
}
