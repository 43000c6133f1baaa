//! Batched generation with a KV cache, left padding and per-sequence stops, plus token-budget
//! batching of many prompts: greedy ([`generate`]) or sampled ([`generate_sampled`], each
//! sequence drawing from its own seeded stream, see [`crate::sampling`]).

use candle_core::{Tensor, D};

use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::sampling::{SampleStream, Sampling};

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// It produced an end-of-sequence token (included in the output tokens).
    Eos,
    /// It reached `max_new_tokens`.
    MaxTokens,
    /// The caller's predicate said the outcome is decided.
    Verdict,
}

/// One prompt's continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// New tokens (the EOS token included when that was the reason to stop).
    pub tokens: Vec<u32>,
    /// Why generation stopped.
    pub stop: StopReason,
}

/// Settings for [`generate`].
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Upper bound on new tokens per prompt.
    pub max_new_tokens: usize,
    /// Token budget per batch: batch size x (longest prompt + max_new_tokens) stays within it.
    pub batch_tokens: usize,
    /// Upper bound on the batch size regardless of the budget.
    pub max_batch: usize,
    /// Tokens that end a sequence.
    pub eos: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 64,
            batch_tokens: 16384,
            max_batch: 64,
            eos: Vec::new(),
        }
    }
}

/// A caller-supplied early stop: called with the prompt's index and the tokens generated so
/// far; `true` ends that sequence with [`StopReason::Verdict`].
pub type StopFn<'a> = dyn Fn(usize, &[u32]) -> bool + Sync + 'a;

/// Splits prompt indices (longest first) into batches within the token budget.
pub fn plan_batches(lengths: &[usize], opts: &GenerateOptions) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0;
    for i in order {
        let l = lengths[i].max(longest);
        let cost = (current.len() + 1) * (l + opts.max_new_tokens);
        if !current.is_empty()
            && (cost > opts.batch_tokens || current.len() >= opts.max_batch.max(1))
        {
            batches.push(std::mem::take(&mut current));
            longest = 0;
        }
        longest = longest.max(lengths[i]);
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Generates greedily for every prompt (token ids, chat template already applied), batching
/// by token budget. Results are in prompt order.
pub fn generate(
    model: &Model,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    stop: Option<&StopFn<'_>>,
) -> Result<Vec<Generation>> {
    let rows: Vec<Row<'_>> = prompts.iter().map(|p| Row { prompt: p, seed: 0 }).collect();
    run(model, &rows, opts, &Sampling::greedy(), stop)
}

/// One sequence to sample: its prompt and the seed of its random stream (see
/// [`sample_seed`](crate::sampling::sample_seed): a prompt's `N` samples are `N` requests with
/// the same prompt and seeds of sample indices `0..N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRequest {
    /// Prompt token ids (chat template applied).
    pub prompt: Vec<u32>,
    /// Seed of the sequence's random stream.
    pub seed: u64,
}

/// Generates every request with `sampling` (greedy when its temperature is 0), batching by
/// token budget. A request's tokens depend only on the model, its prompt, its seed and the
/// settings, not on the other requests, the batch size or their order. `stop` is called with
/// the request's index. Results are in request order.
pub fn generate_sampled(
    model: &Model,
    requests: &[SampleRequest],
    opts: &GenerateOptions,
    sampling: &Sampling,
    stop: Option<&StopFn<'_>>,
) -> Result<Vec<Generation>> {
    sampling.validate()?;
    let rows: Vec<Row<'_>> = requests
        .iter()
        .map(|r| Row {
            prompt: &r.prompt,
            seed: r.seed,
        })
        .collect();
    run(model, &rows, opts, sampling, stop)
}

#[derive(Debug, Clone, Copy)]
struct Row<'a> {
    prompt: &'a [u32],
    seed: u64,
}

fn run(
    model: &Model,
    rows: &[Row<'_>],
    opts: &GenerateOptions,
    sampling: &Sampling,
    stop: Option<&StopFn<'_>>,
) -> Result<Vec<Generation>> {
    let lengths: Vec<usize> = rows.iter().map(|r| r.prompt.len()).collect();
    let mut out: Vec<Option<Generation>> = vec![None; rows.len()];
    for batch in plan_batches(&lengths, opts) {
        let items: Vec<(usize, Row<'_>)> = batch.iter().map(|&i| (i, rows[i])).collect();
        for (i, g) in batch
            .iter()
            .zip(generate_batch(model, &items, opts, sampling, stop)?)
        {
            out[*i] = Some(g);
        }
    }
    Ok(out
        .into_iter()
        .map(|g| g.expect("every prompt is in one batch"))
        .collect())
}

/// Left-pads `seqs` into `[batch, len]` ids with their positions (-1 for padding).
pub(crate) fn left_pad(seqs: &[&[u32]]) -> (Vec<u32>, Vec<Vec<i64>>, usize) {
    let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(seqs.len() * len);
    let mut pos = Vec::with_capacity(seqs.len());
    for s in seqs {
        let pad = len - s.len();
        ids.extend(std::iter::repeat_n(0u32, pad));
        ids.extend_from_slice(s);
        pos.push((0..len as i64).map(|j| j - pad as i64).collect());
    }
    (ids, pos, len)
}

/// Positions as the rotary tables index them (padding mapped to 0).
pub(crate) fn pos_tensor(model: &Model, pos: &[Vec<i64>]) -> Result<Tensor> {
    let b = pos.len();
    let s = pos.first().map_or(0, Vec::len);
    let max = model.config.max_position_embeddings as i64;
    let mut flat = Vec::with_capacity(b * s);
    for row in pos {
        for &p in row {
            if p >= max {
                return Err(EngineError::Invalid(format!(
                    "sequence of {} tokens exceeds the model's context of {max}",
                    p + 1
                )));
            }
            flat.push(p.max(0) as u32);
        }
    }
    Ok(Tensor::from_vec(flat, (b, s), model.device())?)
}

/// Per-sequence decoding state: its random stream and the tokens the repetition penalty sees.
struct Decoder {
    stream: SampleStream,
    seen: Vec<u32>,
}

/// The next token of every row of `logits` (`[rows, vocab]`, f32); `states[r]` is row `r`'s
/// decoder. Plain greedy decoding takes the argmax on the device, as it always has.
fn choose(logits: &Tensor, sampling: &Sampling, states: &mut [&mut Decoder]) -> Result<Vec<u32>> {
    if sampling.is_greedy() && sampling.repetition_penalty == 1.0 {
        return Ok(logits.argmax(D::Minus1)?.to_vec1()?);
    }
    let scores: Vec<Vec<f32>> = logits.to_vec2()?;
    Ok(scores
        .into_iter()
        .zip(states.iter_mut())
        .map(|(mut s, st)| {
            sampling.process(&mut s, &st.seen);
            let u = if sampling.is_greedy() {
                0.0
            } else {
                st.stream.next_uniform()
            };
            sampling.pick(&s, u)
        })
        .collect())
}

fn generate_batch(
    model: &Model,
    items: &[(usize, Row<'_>)],
    opts: &GenerateOptions,
    sampling: &Sampling,
    stop: Option<&StopFn<'_>>,
) -> Result<Vec<Generation>> {
    let n = items.len();
    let seqs: Vec<&[u32]> = items.iter().map(|(_, r)| r.prompt).collect();
    if let Some((i, _)) = items.iter().find(|(_, r)| r.prompt.is_empty()) {
        return Err(EngineError::Invalid(format!("prompt {i} is empty")));
    }
    let (ids, pos, len) = left_pad(&seqs);
    let longest = len + opts.max_new_tokens;
    if longest > model.config.max_position_embeddings {
        return Err(EngineError::Invalid(format!(
            "prompt of {len} tokens plus {} new tokens exceeds the model's context of {}",
            opts.max_new_tokens, model.config.max_position_embeddings
        )));
    }
    let mut decoders: Vec<Decoder> = items
        .iter()
        .map(|(_, r)| Decoder {
            stream: SampleStream::new(r.seed),
            seen: r.prompt.to_vec(),
        })
        .collect();
    let device = model.device().clone();
    let mut cache = model.new_cache(longest);
    let mask = model.mask(&pos, &pos)?;
    let ids_t = Tensor::from_vec(ids, (n, len), &device)?;
    let hidden = model.forward_hidden(&ids_t, &pos_tensor(model, &pos)?, &mask, &mut cache)?;
    let last = hidden.narrow(1, len - 1, 1)?;
    let logits = model.logits(&last)?.squeeze(1)?;
    let mut next = choose(
        &logits,
        sampling,
        &mut decoders.iter_mut().collect::<Vec<_>>(),
    )?;

    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut stops: Vec<Option<StopReason>> = vec![None; n];
    // Rows still generating, as indices into `items`; key positions per active row.
    let mut active: Vec<usize> = (0..n).collect();
    let mut key_pos: Vec<Vec<i64>> = pos;
    loop {
        let mut keep = Vec::with_capacity(active.len());
        for (row, &item) in active.iter().enumerate() {
            let tok = next[row];
            outputs[item].push(tok);
            decoders[item].seen.push(tok);
            let reason = if opts.eos.contains(&tok) {
                Some(StopReason::Eos)
            } else if stop.is_some_and(|f| f(items[item].0, &outputs[item])) {
                Some(StopReason::Verdict)
            } else if outputs[item].len() >= opts.max_new_tokens {
                Some(StopReason::MaxTokens)
            } else {
                None
            };
            match reason {
                Some(r) => stops[item] = Some(r),
                None => keep.push(row),
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() != active.len() {
            let rows = Tensor::from_vec(
                keep.iter().map(|&r| r as u32).collect::<Vec<_>>(),
                keep.len(),
                &device,
            )?;
            cache.select_rows(&rows)?;
            key_pos = keep.iter().map(|&r| key_pos[r].clone()).collect();
            next = keep.iter().map(|&r| next[r]).collect();
            active = keep.iter().map(|&r| active[r]).collect();
        }
        let q_pos: Vec<Vec<i64>> = key_pos
            .iter()
            .map(|k| vec![k.last().copied().unwrap_or(-1) + 1])
            .collect();
        for (k, q) in key_pos.iter_mut().zip(&q_pos) {
            k.push(q[0]);
        }
        let b = active.len();
        let ids_t = Tensor::from_vec(next.clone(), (b, 1), &device)?;
        let mask = model.mask_if_needed(&q_pos, &key_pos)?;
        let hidden = model.forward_hidden_masked(
            &ids_t,
            &pos_tensor(model, &q_pos)?,
            mask.as_ref(),
            &mut cache,
        )?;
        let mut logits = model.logits(&hidden)?.squeeze(1)?;
        if let Some(after) = model.rope_switch_length() {
            let crossing: Vec<usize> = (0..b).filter(|&r| q_pos[r][0] as usize == after).collect();
            if !crossing.is_empty() {
                logits = encode_again(
                    model,
                    &crossing,
                    &key_pos,
                    |r| {
                        let item = active[r];
                        let mut t = items[item].1.prompt.to_vec();
                        t.extend_from_slice(&outputs[item]);
                        t
                    },
                    longest,
                    &mut cache,
                    logits,
                )?;
            }
        }
        let mut states: Vec<&mut Decoder> = Vec::with_capacity(b);
        {
            let mut by_item: Vec<Option<&mut Decoder>> = decoders.iter_mut().map(Some).collect();
            for &item in &active {
                states.push(by_item[item].take().expect("an item is active once"));
            }
        }
        next = choose(&logits, sampling, &mut states)?;
    }
    Ok(outputs
        .into_iter()
        .zip(stops)
        .map(|(tokens, stop)| Generation {
            tokens,
            stop: stop.unwrap_or(StopReason::MaxTokens),
        })
        .collect())
}

/// LongRoPE: the `rows` whose sequences just grew past the original context are encoded again
/// from their first token with the long factors (transformers' Phi-3 drops its cache at that
/// step); their cache rows and logits replace those of the plain decode step.
fn encode_again(
    model: &Model,
    rows: &[usize],
    key_pos: &[Vec<i64>],
    tokens_of: impl Fn(usize) -> Vec<u32>,
    capacity: usize,
    cache: &mut crate::model::KvCache,
    logits: Tensor,
) -> Result<Tensor> {
    let width = key_pos.first().map_or(0, Vec::len);
    let mut ids = Vec::with_capacity(rows.len() * width);
    let mut pos = Vec::with_capacity(rows.len());
    for &r in rows {
        let tokens = tokens_of(r);
        let pad = width.saturating_sub(tokens.len());
        ids.extend(std::iter::repeat_n(0u32, pad));
        ids.extend_from_slice(&tokens);
        pos.push(key_pos[r].clone());
    }
    let device = model.device();
    let mut sub = model.new_cache(capacity);
    let mask = model.mask(&pos, &pos)?;
    let ids = Tensor::from_vec(ids, (rows.len(), width), device)?;
    let hidden = model.forward_hidden(&ids, &pos_tensor(model, &pos)?, &mask, &mut sub)?;
    let fresh = model.logits(&hidden.narrow(1, width - 1, 1)?)?.squeeze(1)?;
    cache.replace_rows(rows, &sub)?;
    let b = logits.dim(0)?;
    let idx: Vec<u32> = (0..b)
        .map(|r| match rows.iter().position(|&x| x == r) {
            Some(j) => (b + j) as u32,
            None => r as u32,
        })
        .collect();
    let idx = Tensor::from_vec(idx, b, device)?;
    Ok(Tensor::cat(&[&logits, &fresh], 0)?.index_select(&idx, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_budget_and_cover_every_prompt() {
        let lengths = [5, 40, 7, 12, 3, 30];
        let opts = GenerateOptions {
            max_new_tokens: 10,
            batch_tokens: 120,
            max_batch: 8,
            eos: vec![],
        };
        let batches = plan_batches(&lengths, &opts);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3, 4, 5]);
        for b in &batches {
            let longest = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(b.len() == 1 || b.len() * (longest + 10) <= 120, "{b:?}");
        }
    }
}
