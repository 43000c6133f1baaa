//! Accumulating statistics of the linear layers' inputs during a tapped forward pass.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::model::{LinearSite, Model};

/// The distinct inputs of a decoder layer's linear layers: q/k/v read one (the attention
/// norm's output), gate/up another (the MLP norm's output); o_proj and down_proj read their
/// own. Statistics are accumulated once per group (llm-compressor hooks each module and
/// accumulates identical copies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputGroup {
    /// Input of q/k/v: the attention norm's output.
    Attn,
    /// Input of o_proj: the attention heads' concatenated output.
    AttnOut,
    /// Input of gate/up: the MLP norm's output.
    Mlp,
    /// Input of down_proj: the gated activation.
    MlpOut,
}

impl InputGroup {
    /// Every group, in forward order.
    pub const ALL: [InputGroup; 4] = [
        InputGroup::Attn,
        InputGroup::AttnOut,
        InputGroup::Mlp,
        InputGroup::MlpOut,
    ];

    /// The group a site reads.
    pub fn of(site: LinearSite) -> InputGroup {
        match site {
            LinearSite::Q | LinearSite::K | LinearSite::V => InputGroup::Attn,
            LinearSite::O => InputGroup::AttnOut,
            LinearSite::Gate | LinearSite::Up => InputGroup::Mlp,
            LinearSite::Down => InputGroup::MlpOut,
        }
    }

    /// The sites reading this group's input.
    pub fn sites(self) -> &'static [LinearSite] {
        match self {
            InputGroup::Attn => &[LinearSite::Q, LinearSite::K, LinearSite::V],
            InputGroup::AttnOut => &[LinearSite::O],
            InputGroup::Mlp => &[LinearSite::Gate, LinearSite::Up],
            InputGroup::MlpOut => &[LinearSite::Down],
        }
    }

    /// The first site of the group, the one whose call is recorded.
    pub fn leader(self) -> LinearSite {
        self.sites()[0]
    }
}

/// Which statistics a calibrated method needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    /// `Σ 2 x xᵀ` over tokens (GPTQ, SparseGPT).
    pub hessian: bool,
    /// `Σ |x|` per channel (AWQ's activation means).
    pub abs_sum: bool,
    /// `max |x|` per channel (SmoothQuant, static activation scales).
    pub abs_max: bool,
    /// `Σ x²` per channel (Wanda's input-column norms).
    pub sq_sum: bool,
    /// The inputs themselves, batch by batch (AWQ's grid search replays them).
    pub inputs: bool,
}

impl Wants {
    /// Everything either asks for.
    pub fn union(self, o: Wants) -> Wants {
        Wants {
            hessian: self.hessian || o.hessian,
            abs_sum: self.abs_sum || o.abs_sum,
            abs_max: self.abs_max || o.abs_max,
            sq_sum: self.sq_sum || o.sq_sum,
            inputs: self.inputs || o.inputs,
        }
    }
}

/// Statistics of one input of one decoder layer, accumulated over the calibration batches.
#[derive(Debug, Clone)]
pub struct InputStats {
    /// Channels (the reading layers' input dimension).
    pub cols: usize,
    /// Sequences seen: llm-compressor's `num_samples` (batch rows, not tokens).
    pub sequences: usize,
    /// Tokens seen.
    pub tokens: usize,
    /// `Σ 2 x xᵀ` over every token, `cols x cols` row-major, in f32.
    pub hessian: Option<Vec<f32>>,
    /// `Σ |x|` per channel, in f32.
    pub abs_sum: Option<Vec<f32>>,
    /// `max |x|` per channel.
    pub abs_max: Option<Vec<f32>>,
    /// `Σ x²` per channel, in f64.
    pub sq_sum: Option<Vec<f64>>,
    /// The inputs, one `[batch, seq, cols]` tensor per calibration batch.
    pub inputs: Vec<Tensor>,
}

impl InputStats {
    /// The Hessian normalised as llm-compressor's GPTQ does: `Σ 2 x xᵀ / sequences`.
    pub fn hessian_mean(&self) -> Option<Vec<f32>> {
        let n = self.sequences.max(1) as f32;
        self.hessian
            .as_ref()
            .map(|h| h.iter().map(|v| v / n).collect())
    }

    /// Mean `|x|` per channel over tokens.
    pub fn abs_mean(&self) -> Option<Vec<f32>> {
        let n = self.tokens.max(1) as f32;
        self.abs_sum
            .as_ref()
            .map(|s| s.iter().map(|v| v / n).collect())
    }
}

/// Statistics of every input group of one decoder layer.
pub type LayerStats = BTreeMap<InputGroup, InputStats>;

/// Accumulating state of one input group while batches flow through a layer.
struct Acc {
    cols: usize,
    sequences: usize,
    tokens: usize,
    hessian: Option<Tensor>,
    abs_sum: Option<Tensor>,
    abs_max: Option<Tensor>,
    sq_sum: Option<Vec<f64>>,
    inputs: Vec<Tensor>,
}

impl Acc {
    fn add(&mut self, x: &Tensor, wants: Wants) -> Result<()> {
        let (b, s, c) = x.dims3()?;
        self.cols = c;
        self.sequences += b;
        self.tokens += b * s;
        let flat = x.to_dtype(DType::F32)?.reshape((b * s, c))?.contiguous()?;
        if wants.hessian {
            let h = (flat.t()?.matmul(&flat)? * 2.0)?;
            self.hessian = Some(match self.hessian.take() {
                Some(acc) => (acc + h)?,
                None => h,
            });
        }
        if wants.abs_sum || wants.abs_max {
            let abs = flat.abs()?;
            if wants.abs_sum {
                let s = abs.sum(0)?;
                self.abs_sum = Some(match self.abs_sum.take() {
                    Some(acc) => (acc + s)?,
                    None => s,
                });
            }
            if wants.abs_max {
                let m = abs.max(0)?;
                self.abs_max = Some(match self.abs_max.take() {
                    Some(acc) => acc.maximum(&m)?,
                    None => m,
                });
            }
        }
        if wants.sq_sum {
            let sq = flat.sqr()?.to_dtype(DType::F64)?.sum(0)?.to_vec1::<f64>()?;
            match &mut self.sq_sum {
                Some(acc) => acc.iter_mut().zip(sq).for_each(|(a, v)| *a += v),
                None => self.sq_sum = Some(sq),
            }
        }
        if wants.inputs {
            self.inputs.push(x.clone());
        }
        Ok(())
    }

    fn finish(self) -> Result<InputStats> {
        let vec = |t: Option<Tensor>| -> Result<Option<Vec<f32>>> {
            t.map(|t| Ok(t.flatten_all()?.to_vec1::<f32>()?))
                .transpose()
        };
        Ok(InputStats {
            cols: self.cols,
            sequences: self.sequences,
            tokens: self.tokens,
            hessian: vec(self.hessian)?,
            abs_sum: vec(self.abs_sum)?,
            abs_max: vec(self.abs_max)?,
            sq_sum: self.sq_sum,
            inputs: self.inputs,
        })
    }
}

/// Runs `layer` of `model` over every batch of hidden states in `xs` (each `[batch, seq,
/// hidden]`), accumulating the statistics `wants` asks for. Returns them with the layer's
/// outputs (one per batch).
pub fn capture_layer(
    model: &Model,
    layer: usize,
    xs: &[Tensor],
    wants: Wants,
) -> Result<(LayerStats, Vec<Tensor>)> {
    let mut accs: BTreeMap<InputGroup, Acc> = BTreeMap::new();
    let mut outs = Vec::with_capacity(xs.len());
    for x in xs {
        let mut tap = |_l: usize, site: LinearSite, input: &Tensor| -> Result<Option<Tensor>> {
            let group = InputGroup::of(site);
            if site == group.leader() {
                let acc = accs.entry(group).or_insert_with(|| Acc {
                    cols: 0,
                    sequences: 0,
                    tokens: 0,
                    hessian: None,
                    abs_sum: None,
                    abs_max: None,
                    sq_sum: None,
                    inputs: Vec::new(),
                });
                acc.add(input, wants)?;
            }
            Ok(None)
        };
        outs.push(model.layer_forward(layer, x, &mut tap)?);
    }
    let mut stats = LayerStats::new();
    for (g, acc) in accs {
        stats.insert(g, acc.finish()?);
    }
    Ok((stats, outs))
}
