//! The key/value cache of a batch being generated.

use candle_core::Tensor;

use crate::error::{EngineError, Result};

/// Per-layer key/value cache of a batch: `[batch, kv_heads, time, head_dim]` per layer.
///
/// It grows by concatenation, or, when made [`with_capacity`](KvCache::with_capacity), is
/// written in place into buffers allocated once for the whole generation (no copy of the
/// cached keys and values per step; the layout GPUs want).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    k: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    /// Time steps allocated per buffer; 0 grows by concatenation.
    capacity: usize,
    /// Time steps filled.
    len: usize,
}

impl KvCache {
    /// An empty cache for `layers` layers that grows by concatenation.
    pub fn new(layers: usize) -> KvCache {
        KvCache {
            k: vec![None; layers],
            v: vec![None; layers],
            capacity: 0,
            len: 0,
        }
    }

    /// An empty cache for `layers` layers holding up to `capacity` time steps in buffers
    /// allocated at the first forward pass.
    pub fn with_capacity(layers: usize, capacity: usize) -> KvCache {
        KvCache {
            capacity,
            ..KvCache::new(layers)
        }
    }

    /// Time steps cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The keys and values stored for `layer` (a cache that grows by concatenation holds
    /// exactly the filled steps), if any.
    pub fn layer(&self, layer: usize) -> Option<(&Tensor, &Tensor)> {
        Some((self.k.get(layer)?.as_ref()?, self.v.get(layer)?.as_ref()?))
    }

    /// Keeps only the given batch rows (sequences that are still generating).
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for t in self.k.iter_mut().chain(self.v.iter_mut()).flatten() {
            *t = t.index_select(rows, 0)?;
        }
        Ok(())
    }

    /// Replaces the cached keys and values of batch rows `rows` by the rows of `other` (one
    /// per entry of `rows`, in that order), which must cover the same time steps.
    pub fn replace_rows(&mut self, rows: &[usize], other: &KvCache) -> Result<()> {
        if other.len != self.len || other.k.len() != self.k.len() {
            return Err(EngineError::Invalid(format!(
                "KV cache rows of {} steps cannot replace rows of {} steps",
                other.len, self.len
            )));
        }
        for (mine, theirs) in [(&mut self.k, &other.k), (&mut self.v, &other.v)] {
            for (slot, src) in mine.iter_mut().zip(theirs) {
                let (Some(t), Some(src)) = (slot.as_ref(), src.as_ref()) else {
                    continue;
                };
                let b = t.dim(0)?;
                let steps = t.dim(2)?.min(src.dim(2)?);
                let t = t.narrow(2, 0, steps)?;
                let src = src.narrow(2, 0, steps)?;
                let idx: Vec<u32> = (0..b)
                    .map(|r| match rows.iter().position(|&x| x == r) {
                        Some(j) => (b + j) as u32,
                        None => r as u32,
                    })
                    .collect();
                let idx = Tensor::from_vec(idx, b, t.device())?;
                *slot = Some(Tensor::cat(&[&t, &src], 0)?.index_select(&idx, 0)?);
            }
        }
        Ok(())
    }

    /// Appends layer `i`'s new keys and values (`[batch, kv_heads, new, head_dim]`) at the
    /// current length and returns the cached ones including them.
    pub(crate) fn append(&mut self, i: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let new = k.dim(2)?;
        if self.capacity == 0 {
            let (k, v) = match (&self.k[i], &self.v[i]) {
                (Some(pk), Some(pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
                _ => (k, v),
            };
            self.k[i] = Some(k.clone());
            self.v[i] = Some(v.clone());
            return Ok((k, v));
        }
        let end = self.len + new;
        if end > self.capacity {
            return Err(EngineError::Invalid(format!(
                "KV cache of {} steps cannot take {end}",
                self.capacity
            )));
        }
        let mut out = Vec::with_capacity(2);
        for (slot, x) in [(&mut self.k[i], k), (&mut self.v[i], v)] {
            let (b, h, _, d) = x.dims4()?;
            let buf = match slot {
                Some(buf) => buf.clone(),
                None => {
                    let buf = Tensor::zeros((b, h, self.capacity, d), x.dtype(), x.device())?;
                    *slot = Some(buf.clone());
                    buf
                }
            };
            buf.slice_set(&x.contiguous()?, 2, self.len)?;
            out.push(buf.narrow(2, 0, end)?);
        }
        let v = out.pop().expect("two tensors");
        let k = out.pop().expect("two tensors");
        Ok((k, v))
    }

    /// Records that a forward pass of `new` time steps went through every layer.
    pub(crate) fn advance(&mut self, new: usize) {
        self.len += new;
    }
}
