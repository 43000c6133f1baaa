//! Teacher-forced scoring: log-likelihoods of continuations (multiple-choice accuracy),
//! per-token log-probabilities, next-token probability mass (refusal log-odds) and
//! reference-vs-variant logit fidelity, all without keeping full-vocabulary logits around.

use candle_core::{Tensor, D};

use crate::error::{EngineError, Result};
use crate::generate::{left_pad, plan_batches, pos_tensor, GenerateOptions};
use crate::model::{KvCache, Model};

/// Log-likelihood of one continuation given its context.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLik {
    /// Sum of log-probabilities of the continuation tokens.
    pub sum: f64,
    /// Per-token log-probabilities.
    pub tokens: Vec<f32>,
    /// Every continuation token was the argmax (lm-evaluation-harness's `is_greedy`).
    pub is_greedy: bool,
}

/// Fidelity of a variant's next-token distributions against the reference's, per position.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitFidelity {
    /// KL(P_ref || P_variant) at each scored position, in nats.
    pub kld: Vec<f64>,
    /// Whether the top token agreed at each scored position.
    pub same_top: Vec<bool>,
}

fn check_request(ctx: &[u32], cont: &[u32], i: usize) -> Result<()> {
    if ctx.is_empty() {
        return Err(EngineError::Invalid(format!("request {i}: empty context")));
    }
    if cont.is_empty() {
        return Err(EngineError::Invalid(format!(
            "request {i}: empty continuation"
        )));
    }
    Ok(())
}

/// Runs `(context ++ continuation[..-1])` for a batch and hands, per request, the log-softmax
/// rows `[cont_len, vocab]` predicting the continuation tokens to `f`.
fn for_each_continuation<F>(
    model: &Model,
    requests: &[(&[u32], &[u32])],
    budget: usize,
    mut f: F,
) -> Result<()>
where
    F: FnMut(usize, &Tensor) -> Result<()>,
{
    let inputs: Vec<Vec<u32>> = requests
        .iter()
        .map(|(c, k)| {
            let mut v = c.to_vec();
            v.extend_from_slice(&k[..k.len() - 1]);
            v
        })
        .collect();
    let lengths: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let opts = GenerateOptions {
        max_new_tokens: 0,
        batch_tokens: budget,
        max_batch: 64,
        eos: vec![],
    };
    for batch in plan_batches(&lengths, &opts) {
        let seqs: Vec<&[u32]> = batch.iter().map(|&i| inputs[i].as_slice()).collect();
        let (ids, pos, len) = left_pad(&seqs);
        let mask = model.mask(&pos, &pos)?;
        let ids_t = Tensor::from_vec(ids, (seqs.len(), len), model.device())?;
        let mut cache = KvCache::new(model.config.num_layers);
        let hidden = model.forward_hidden(&ids_t, &pos_tensor(model, &pos)?, &mask, &mut cache)?;
        for (row, &i) in batch.iter().enumerate() {
            let cont_len = requests[i].1.len();
            let h = hidden.get(row)?.narrow(0, len - cont_len, cont_len)?;
            let logp = candle_nn::ops::log_softmax(&model.logits(&h)?, D::Minus1)?;
            f(i, &logp)?;
        }
    }
    Ok(())
}

/// Log-likelihood of each `(context, continuation)` pair, as lm-evaluation-harness defines it.
pub fn loglikelihood(
    model: &Model,
    requests: &[(Vec<u32>, Vec<u32>)],
    budget: usize,
) -> Result<Vec<LogLik>> {
    for (i, (c, k)) in requests.iter().enumerate() {
        check_request(c, k, i)?;
    }
    let reqs: Vec<(&[u32], &[u32])> = requests
        .iter()
        .map(|(c, k)| (c.as_slice(), k.as_slice()))
        .collect();
    let mut out = vec![None; requests.len()];
    for_each_continuation(model, &reqs, budget, |i, logp| {
        let cont = reqs[i].1;
        let idx = Tensor::from_vec(cont.to_vec(), (cont.len(), 1), logp.device())?;
        let picked: Vec<f32> = logp.gather(&idx, 1)?.squeeze(1)?.to_vec1()?;
        let argmax: Vec<u32> = logp.argmax(D::Minus1)?.to_vec1()?;
        out[i] = Some(LogLik {
            sum: picked.iter().map(|&x| f64::from(x)).sum(),
            is_greedy: argmax.as_slice() == cont,
            tokens: picked,
        });
        Ok(())
    })?;
    Ok(out.into_iter().map(|x| x.expect("scored")).collect())
}

/// KL divergence and top-token agreement of `variant` against `reference`, teacher-forced on
/// the same `(prompt, continuation)` tokens (normally the reference's own continuation).
/// Positions scored are those predicting the continuation tokens.
pub fn logit_fidelity(
    reference: &Model,
    variant: &Model,
    requests: &[(Vec<u32>, Vec<u32>)],
    budget: usize,
) -> Result<Vec<LogitFidelity>> {
    let valid: Vec<usize> = (0..requests.len())
        .filter(|&i| !requests[i].0.is_empty() && !requests[i].1.is_empty())
        .collect();
    let reqs: Vec<(&[u32], &[u32])> = valid
        .iter()
        .map(|&i| (requests[i].0.as_slice(), requests[i].1.as_slice()))
        .collect();
    let mut ref_rows: Vec<Option<Tensor>> = vec![None; reqs.len()];
    let mut out: Vec<LogitFidelity> = vec![
        LogitFidelity {
            kld: vec![],
            same_top: vec![]
        };
        requests.len()
    ];
    // Score in chunks so at most one chunk's log-probabilities are held at a time.
    let chunk = 16;
    for start in (0..reqs.len()).step_by(chunk) {
        let end = (start + chunk).min(reqs.len());
        let part = &reqs[start..end];
        for_each_continuation(reference, part, budget, |i, logp| {
            ref_rows[start + i] = Some(logp.clone());
            Ok(())
        })?;
        for_each_continuation(variant, part, budget, |i, logq| {
            let logp = ref_rows[start + i].take().expect("reference scored first");
            let p = logp.exp()?;
            let kld: Vec<f32> = (p * (&logp - logq)?)?.sum(D::Minus1)?.to_vec1()?;
            let top_p: Vec<u32> = logp.argmax(D::Minus1)?.to_vec1()?;
            let top_q: Vec<u32> = logq.argmax(D::Minus1)?.to_vec1()?;
            out[valid[start + i]] = LogitFidelity {
                kld: kld.into_iter().map(|x| f64::from(x).max(0.0)).collect(),
                same_top: top_p.iter().zip(&top_q).map(|(a, b)| a == b).collect(),
            };
            Ok(())
        })?;
    }
    Ok(out)
}

/// Probability mass that the next token (after each prompt) falls in `tokens`.
pub fn next_token_mass(
    model: &Model,
    prompts: &[Vec<u32>],
    tokens: &[u32],
    budget: usize,
) -> Result<Vec<f64>> {
    let lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let opts = GenerateOptions {
        max_new_tokens: 0,
        batch_tokens: budget,
        max_batch: 64,
        eos: vec![],
    };
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(EngineError::Invalid(format!("prompt {i} is empty")));
    }
    let vocab = model.config.vocab_size as u32;
    if let Some(t) = tokens.iter().find(|&&t| t >= vocab) {
        return Err(EngineError::Invalid(format!(
            "token id {t} is outside the vocabulary of {vocab}"
        )));
    }
    let mut out = vec![0.0; prompts.len()];
    let idx = Tensor::from_vec(tokens.to_vec(), tokens.len(), model.device())?;
    for batch in plan_batches(&lengths, &opts) {
        let seqs: Vec<&[u32]> = batch.iter().map(|&i| prompts[i].as_slice()).collect();
        let (ids, pos, len) = left_pad(&seqs);
        let mask = model.mask(&pos, &pos)?;
        let ids_t = Tensor::from_vec(ids, (seqs.len(), len), model.device())?;
        let mut cache = KvCache::new(model.config.num_layers);
        let hidden = model.forward_hidden(&ids_t, &pos_tensor(model, &pos)?, &mask, &mut cache)?;
        let last = hidden.narrow(1, len - 1, 1)?.squeeze(1)?;
        let probs = candle_nn::ops::softmax_last_dim(&model.logits(&last)?)?;
        let mass: Vec<f32> = probs.index_select(&idx, 1)?.sum(D::Minus1)?.to_vec1()?;
        for (&i, m) in batch.iter().zip(mass) {
            out[i] = f64::from(m);
        }
    }
    Ok(out)
}

/// Full logits at every position of each sequence (for tests and small diagnostics).
pub fn all_logits(model: &Model, seqs: &[Vec<u32>]) -> Result<Vec<Tensor>> {
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let (ids, pos, len) = left_pad(&refs);
    let mask = model.mask(&pos, &pos)?;
    let ids_t = Tensor::from_vec(ids, (seqs.len(), len), model.device())?;
    let mut cache = KvCache::new(model.config.num_layers);
    let hidden = model.forward_hidden(&ids_t, &pos_tensor(model, &pos)?, &mask, &mut cache)?;
    let logits = model.logits(&hidden)?;
    let mut out = Vec::with_capacity(seqs.len());
    for (row, s) in seqs.iter().enumerate() {
        out.push(logits.get(row)?.narrow(0, len - s.len(), s.len())?);
    }
    Ok(out)
}
