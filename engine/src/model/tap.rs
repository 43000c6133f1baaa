//! Taps on the linear layers of a forward pass: calibrated compressors see (and may replace)
//! every separate projection's input, one decoder layer at a time.

use candle_core::Tensor;

use crate::error::Result;
use crate::linear::Linear;

/// One of the seven linear layers of a decoder layer with separate projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinearSite {
    /// `self_attn.q_proj`.
    Q,
    /// `self_attn.k_proj`.
    K,
    /// `self_attn.v_proj`.
    V,
    /// `self_attn.o_proj`.
    O,
    /// `mlp.gate_proj`.
    Gate,
    /// `mlp.up_proj`.
    Up,
    /// `mlp.down_proj`.
    Down,
}

impl LinearSite {
    /// Every site, in the order the forward pass reaches them.
    pub const ALL: [LinearSite; 7] = [
        LinearSite::Q,
        LinearSite::K,
        LinearSite::V,
        LinearSite::O,
        LinearSite::Gate,
        LinearSite::Up,
        LinearSite::Down,
    ];

    /// The module path inside a decoder layer (`self_attn.q_proj`).
    pub fn module(self) -> &'static str {
        match self {
            LinearSite::Q => "self_attn.q_proj",
            LinearSite::K => "self_attn.k_proj",
            LinearSite::V => "self_attn.v_proj",
            LinearSite::O => "self_attn.o_proj",
            LinearSite::Gate => "mlp.gate_proj",
            LinearSite::Up => "mlp.up_proj",
            LinearSite::Down => "mlp.down_proj",
        }
    }

    /// The HF weight name of this site in decoder layer `layer`.
    pub fn weight_name(self, layer: usize) -> String {
        format!("model.layers.{layer}.{}.weight", self.module())
    }
}

/// Sees every linear layer's input in a tapped forward pass
/// ([`Model::layer_forward`](super::Model::layer_forward)): called with the layer index, the
/// site and the input `[batch, seq, in]`; returning `Some(y)` replaces the layer's output by
/// `y`, `None` lets the model compute it.
pub type LinearTap<'a> = dyn FnMut(usize, LinearSite, &Tensor) -> Result<Option<Tensor>> + 'a;

/// The tap of one decoder layer in a pass (none in an ordinary pass).
pub(crate) struct LayerTap<'t, 'a> {
    pub tap: Option<&'t mut LinearTap<'a>>,
    pub layer: usize,
    pub flat: bool,
}

impl LayerTap<'_, '_> {
    /// `l` applied to `x`, unless the tap answers for it.
    pub fn linear(&mut self, site: LinearSite, l: &Linear, x: &Tensor) -> Result<Tensor> {
        if let Some(tap) = self.tap.as_mut() {
            if let Some(y) = tap(self.layer, site, x)? {
                return Ok(y);
            }
        }
        l.forward(x, self.flat)
    }
}
