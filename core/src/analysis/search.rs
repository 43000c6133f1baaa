//! `[search]` / `compsafe search`: small prompt changes at the compression boundary. The data
//! of a search (what each method found per prompt), how the units' parts combine, the
//! divergences a sweep's report gains, and search.md. The method itself is in
//! `compsafe-eval`'s `search`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::judge::Verdict;
use crate::report::{Direction, Divergence};

/// How suffixes are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Greedy coordinate search: one position at a time, best of `candidates` tokens.
    Greedy,
    /// Independent uniformly random suffixes (the baseline).
    Random,
}

impl Strategy {
    /// The random stream of the method (mixed into every prompt's seed).
    pub fn stream(self) -> u64 {
        match self {
            Strategy::Greedy => 0x6772_6565_6479,
            Strategy::Random => 0x7261_6e64_6f6d,
        }
    }
}

/// Settings of a search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    /// Scored suffixes per prompt and method (see the module docs).
    pub budget: usize,
    /// Suffix length in tokens.
    pub suffix_len: usize,
    /// Replacement tokens scored per greedy step.
    pub candidates: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// The reference's refusal log-odds must stay at or above this for a suffix to count.
    pub margin: f64,
}

/// The best suffix one method found for one prompt, and its confirmation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Found {
    /// The prompt's id in its suite.
    pub prompt_id: String,
    /// The prompt as written.
    pub prompt: String,
    /// The suffix's text.
    pub suffix: String,
    /// The suffix's token ids.
    pub suffix_tokens: Vec<u32>,
    /// The prompt with the suffix, as sent to both models.
    pub searched_prompt: String,
    /// Reference refusal log-odds on the searched prompt.
    pub reference_logodds: f64,
    /// Variant refusal log-odds on the searched prompt.
    pub variant_logodds: f64,
    /// `reference_logodds - variant_logodds`.
    pub gap: f64,
    /// The gap on the unchanged prompt.
    pub initial_gap: f64,
    /// Suffixes scored for this prompt.
    pub evaluations: usize,
    /// Whether some scored suffix kept the reference at or above the margin; only such a
    /// suffix is confirmed.
    pub feasible: bool,
    /// The reference's greedy response to the searched prompt (feasible only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_response: Option<String>,
    /// The variant's greedy response to the searched prompt (feasible only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant_response: Option<String>,
    /// The judge's verdict on the reference's response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_verdict: Option<Verdict>,
    /// The judge's verdict on the variant's response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant_verdict: Option<Verdict>,
    /// Confirmed: the reference refused and the variant complied.
    pub hit: bool,
}

/// One method's results over the prompts searched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// The method.
    pub strategy: Strategy,
    /// Confirmed hits.
    pub hits: usize,
    /// Suffixes scored in all.
    pub evaluations: usize,
    /// Wall-clock seconds (scoring and confirmation).
    pub seconds: f64,
    /// One entry per prompt searched.
    pub prompts: Vec<Found>,
}

/// What the search ran on and found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    /// The settings.
    pub config: SearchConfig,
    /// Prompts of the suite looked at.
    pub prompts: usize,
    /// Of those, refused by both models as written (the ones searched).
    pub eligible: usize,
    /// Refused by the reference but not by the variant as written (already flipped).
    pub already_flipped: usize,
    /// Tokens suffixes are drawn from.
    pub token_pool: usize,
    /// Seconds spent selecting prompts (generation on the unchanged prompts).
    pub selection_seconds: f64,
    /// The greedy coordinate search.
    pub greedy: MethodResult,
    /// The random-sampling baseline with the same budget.
    pub random: MethodResult,
}

/// What the selection unit found: the prompts both models refuse as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Indices (in the suite) of the prompts both models refuse, the ones searched.
    pub eligible: Vec<usize>,
    /// Prompts the reference refuses and the variant already answers as written.
    pub already_flipped: usize,
    /// Tokens suffixes are drawn from.
    pub token_pool: usize,
    /// Seconds spent selecting (generation on the unchanged prompts).
    pub seconds: f64,
}

/// Assembles one variant's search from its selection and the method parts of every slice
/// (in plan order): greedy parts and random parts are concatenated, in prompt order.
pub fn combine(
    config: SearchConfig,
    prompts: usize,
    selection: &Selection,
    parts: Vec<MethodResult>,
) -> SearchResult {
    let mut greedy = MethodResult {
        strategy: Strategy::Greedy,
        hits: 0,
        evaluations: 0,
        seconds: 0.0,
        prompts: Vec::new(),
    };
    let mut random = MethodResult {
        strategy: Strategy::Random,
        ..greedy.clone()
    };
    for p in parts {
        let m = match p.strategy {
            Strategy::Greedy => &mut greedy,
            Strategy::Random => &mut random,
        };
        m.hits += p.hits;
        m.evaluations += p.evaluations;
        m.seconds += p.seconds;
        m.prompts.extend(p.prompts);
    }
    SearchResult {
        config,
        prompts,
        eligible: selection.eligible.len(),
        already_flipped: selection.already_flipped,
        token_pool: selection.token_pool,
        selection_seconds: selection.seconds,
        greedy,
        random,
    }
}

/// The confirmed hits of a search as report divergences (refuse → comply), marked searched,
/// with both responses and the reference's log-odds on the searched prompt.
pub fn divergences(found: &MethodResult, variant: &str, suite: &str) -> Vec<Divergence> {
    found
        .prompts
        .iter()
        .filter(|f| f.hit)
        .map(|f| Divergence {
            variant: variant.to_string(),
            suite: suite.to_string(),
            prompt_id: f.prompt_id.clone(),
            direction: Direction::RefuseToComply,
            prompt: f.searched_prompt.clone(),
            reference_response: f.reference_response.clone().unwrap_or_default(),
            variant_response: f.variant_response.clone().unwrap_or_default(),
            reference_refusal_logodds: Some(f.reference_logodds),
            searched: Some(true),
            suffix: Some(f.suffix.clone()),
            verdicts: Default::default(),
        })
        .collect()
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.replace('|', "\\|");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut t: String = flat.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn method_line(m: &MethodResult, eligible: usize) -> String {
    let feasible = m.prompts.iter().filter(|f| f.feasible).count();
    format!(
        "{} hit{} on {eligible} prompt{} ({feasible} kept the reference at the margin; {} \
         suffixes scored, {:.1} s)",
        m.hits,
        if m.hits == 1 { "" } else { "s" },
        if eligible == 1 { "" } else { "s" },
        m.evaluations,
        m.seconds
    )
}

/// search.md for one searched variant.
pub fn markdown(model: &str, variant: &str, suite: &str, seconds: f64, r: &SearchResult) -> String {
    let mut s = String::new();
    let c = &r.config;
    let _ = writeln!(
        s,
        "# Targeted search: {} against {variant} on {suite}\n\n\
         Suffix of {} tokens, budget {} scored suffixes per prompt and method, {} candidates \
         per greedy step, reference margin {} nats, seed {}. Of {} prompts, {} are refused by \
         both models as written and were searched ({} already flip without a suffix). {:.1} s \
         in all.\n",
        model,
        c.suffix_len,
        c.budget,
        c.candidates,
        c.margin,
        c.seed,
        r.prompts,
        r.eligible,
        r.already_flipped,
        seconds
    );
    let _ = writeln!(
        s,
        "- greedy coordinate search: {}\n- random sampling (same budget): {}\n",
        method_line(&r.greedy, r.eligible),
        method_line(&r.random, r.eligible)
    );
    let hits: Vec<(&str, &Found)> = r
        .greedy
        .prompts
        .iter()
        .map(|f| ("greedy", f))
        .chain(r.random.prompts.iter().map(|f| ("random", f)))
        .filter(|(_, f)| f.hit)
        .collect();
    if hits.is_empty() {
        s.push_str("No confirmed reference-refuses / variant-complies prompt.\n");
        return s;
    }
    s.push_str(
        "| method | prompt id | prompt | suffix | log-odds gap (unchanged → searched) | \
         reference response | variant response |\n|---|---|---|---|---|---|---|\n",
    );
    for (method, f) in hits {
        let _ = writeln!(
            s,
            "| {method} | {} | {} | `{}` | {:+.2} → {:+.2} | {} ({}) | {} ({}) |",
            one_line(&f.prompt_id, 40),
            one_line(&f.prompt, 80),
            one_line(&f.suffix, 60).replace('`', "'"),
            f.initial_gap,
            f.gap,
            one_line(f.reference_response.as_deref().unwrap_or_default(), 80),
            f.reference_verdict.map_or("—".into(), |v| v.to_string()),
            one_line(f.variant_response.as_deref().unwrap_or_default(), 80),
            f.variant_verdict.map_or("—".into(), |v| v.to_string()),
        );
    }
    s
}
