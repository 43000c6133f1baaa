//! Work units as they travel between coordinator and workers: what to run and what came back,
//! and how a sweep is planned into them. Pure data (JSON on the wire).
//!
//! A unit has a [`UnitKind`], a group and a stage. A unit waits until every unit of its kind
//! and group with a lower stage has its result, and then receives those results as inputs:
//!
//! | kind | group | stage 0 | stage 1 | stage 2 |
//! |---|---|---|---|---|
//! | `evaluate` | suite | the reference on the suite | each variant on a slice of it | |
//! | `heads` | 0 | the unablated baseline | a share of the units, ablated | confirmation |
//! | `sensitivity` | 0 | the uncompressed baseline | a share of the units, compressed | |
//! | `conditioned` | 0 | f32 and f32 + noise | one compressor and its noise control | |
//! | `search` | searched variant | prompts both models refuse | one method on a prompt slice | |
//! | `judge` | suite (or [`LABELS_GROUP`]) | | | one judge model on the suite's responses |
//!
//! A `judge` unit also waits for every `evaluate` unit of its suite (its group) and receives
//! their records; the labelled sample's judge units wait for nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::report::{ModelInfo, Record, VariantInfo};
use crate::spec::Validated;

/// What a unit does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// A variant on a slice of a suite: generated, judged and compared with the reference.
    #[default]
    Evaluate,
    /// A slice of `[analysis.heads]`.
    Heads,
    /// A slice of `[analysis.sensitivity]`.
    Sensitivity,
    /// A slice of `[analysis.conditioned]`.
    Conditioned,
    /// A slice of `[search]`.
    Search,
    /// One judge model on one suite's responses (or on the labelled sample).
    Judge,
}

impl UnitKind {
    /// Every kind.
    pub const ALL: [UnitKind; 6] = [
        UnitKind::Evaluate,
        UnitKind::Heads,
        UnitKind::Sensitivity,
        UnitKind::Conditioned,
        UnitKind::Search,
        UnitKind::Judge,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Evaluate => "evaluate",
            UnitKind::Heads => "heads",
            UnitKind::Sensitivity => "sensitivity",
            UnitKind::Conditioned => "conditioned",
            UnitKind::Search => "search",
            UnitKind::Judge => "judge",
        }
    }
}

impl fmt::Display for UnitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UnitKind {
    type Err = String;
    fn from_str(s: &str) -> Result<UnitKind, String> {
        UnitKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown unit kind {s:?}"))
    }
}

/// A sweep's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SweepId(pub String);

impl SweepId {
    /// A new sweep's id: the spec's hash prefix and the submission time in milliseconds, with
    /// `salt` in the low bits (two coordinators submitting the same spec in the same
    /// millisecond get different ids).
    pub fn new(spec_sha: &str, now_ms: u64, salt: u64) -> SweepId {
        SweepId(format!(
            "{}-{:x}",
            &spec_sha[..12.min(spec_sha.len())],
            (now_ms << 8 | (salt & 0xff)) & 0xffff_ffff_ffff
        ))
    }
}

impl fmt::Display for SweepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A unit's id: its sweep and its position in the sweep's plan, `<sweep>:<ordinal>` on the
/// wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitId {
    /// The sweep.
    pub sweep: SweepId,
    /// Position in the plan.
    pub ordinal: u32,
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.sweep, self.ordinal)
    }
}

impl FromStr for UnitId {
    type Err = String;
    fn from_str(id: &str) -> Result<UnitId, String> {
        id.rsplit_once(':')
            .and_then(|(s, o)| {
                o.parse().ok().map(|ordinal| UnitId {
                    sweep: SweepId(s.to_string()),
                    ordinal,
                })
            })
            .ok_or_else(|| format!("unit id {id:?} is not <sweep>:<ordinal>"))
    }
}

/// The reference's outputs on a suite, which variant units of that suite are compared with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReferenceWire {
    /// Per prompt id: the prompt's tokens and the reference's response tokens.
    pub tokens: BTreeMap<String, (Vec<u32>, Vec<u32>)>,
    /// Typical (median) mean per-token log-likelihood of the reference's own responses.
    pub typical_logprob: Option<f64>,
}

impl ReferenceWire {
    /// The reference's outputs of several units of one suite, merged.
    pub fn merge<'a>(parts: impl IntoIterator<Item = &'a ReferenceWire>) -> Option<ReferenceWire> {
        let mut merged: Option<ReferenceWire> = None;
        for r in parts {
            let m = merged.get_or_insert_with(ReferenceWire::default);
            m.tokens.extend(r.tokens.clone());
            m.typical_logprob = m.typical_logprob.or(r.typical_logprob);
        }
        merged
    }
}

/// One unit of a planned sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// What it does.
    pub kind: UnitKind,
    /// Units of one group depend on the lower stages of the same group (see the module docs).
    pub group: u32,
    /// Its stage within the group.
    pub stage: u32,
    /// Evaluate: the variant's index in the spec. Analyses: an index of the kind's own
    /// (a compressor of `[analysis.conditioned]`, a search method, a slice of a scan).
    pub variant: u32,
    /// Evaluate: the suite's index in the spec.
    pub suite: u32,
    /// Evaluate and search: the first prompt of the range. Scans: the slice's index.
    pub start: u32,
    /// Evaluate and search: one past the last prompt. Scans: the number of slices.
    pub end: u32,
}

/// Splits a sweep into units: the evaluation first (reference units of a suite before its
/// variant units; reference units cover a whole suite since variants are compared with the
/// reference's suite-wide outputs; variant units cover at most `prompts_per_unit` prompts, 0
/// meaning a whole suite), then the analyses, stage by stage.
pub fn plan(v: &Validated, prompts_per_unit: usize) -> Vec<Planned> {
    let spec = &v.spec;
    let mut units = Vec::new();
    for vi in 0..spec.variants.len() {
        for si in spec.evaluated_suites() {
            let n = v.suites[si].prompts.len();
            let step = if vi == 0 || prompts_per_unit == 0 {
                n.max(1)
            } else {
                prompts_per_unit
            };
            let mut start = 0;
            while start < n {
                let end = (start + step).min(n);
                units.push(Planned {
                    kind: UnitKind::Evaluate,
                    group: si as u32,
                    stage: u32::from(vi != 0),
                    variant: vi as u32,
                    suite: si as u32,
                    start: start as u32,
                    end: end as u32,
                });
                start = end;
            }
        }
    }
    let one = |kind, stage, variant, start, end| Planned {
        kind,
        group: 0,
        stage,
        variant,
        suite: 0,
        start,
        end,
    };
    if let Some(h) = &spec.analysis.heads {
        units.push(one(UnitKind::Heads, 0, 0, 0, 0));
        let n = h.slices as u32;
        units.extend((0..n).map(|k| one(UnitKind::Heads, 1, 0, k, n)));
        if h.confirm > 0 {
            units.push(one(UnitKind::Heads, 2, 0, 0, 0));
        }
    }
    if let Some(s) = &spec.analysis.sensitivity {
        units.push(one(UnitKind::Sensitivity, 0, 0, 0, 0));
        let n = s.slices as u32;
        units.extend((0..n).map(|k| one(UnitKind::Sensitivity, 1, 0, k, n)));
    }
    if let Some(c) = &spec.analysis.conditioned {
        units.push(one(UnitKind::Conditioned, 0, 0, 0, 0));
        units.extend((0..c.variants.len() as u32).map(|i| one(UnitKind::Conditioned, 1, i, 0, 0)));
    }
    if let Some(s) = &spec.search {
        let n = s.limit.min(v.suites[s.suite_index].prompts.len());
        for g in 0..s.variants.len() as u32 {
            units.push(Planned {
                group: g,
                ..one(UnitKind::Search, 0, 0, 0, n as u32)
            });
            for method in 0..2 {
                let mut start = 0;
                while start < n {
                    let end = (start + s.slice).min(n);
                    units.push(Planned {
                        group: g,
                        suite: s.suite_index as u32,
                        ..one(UnitKind::Search, 1, method, start as u32, end as u32)
                    });
                    start = end;
                }
            }
        }
    }
    // Judge models: each on every generation suite's responses, then on the labelled sample.
    for j in 0..spec.judge.models.len() as u32 {
        for si in spec.evaluated_suites() {
            if v.suites[si].expect == crate::suite::Expect::MultipleChoice {
                continue;
            }
            units.push(Planned {
                kind: UnitKind::Judge,
                group: si as u32,
                stage: JUDGE_STAGE,
                variant: j,
                suite: si as u32,
                start: 0,
                end: 0,
            });
        }
        if !v.labels.is_empty() {
            units.push(Planned {
                kind: UnitKind::Judge,
                group: LABELS_GROUP,
                stage: 0,
                variant: j,
                suite: 0,
                start: 0,
                end: v.labels.len() as u32,
            });
        }
    }
    units
}

/// The group of the judge units that judge the labelled sample.
pub const LABELS_GROUP: u32 = u32::MAX;

/// The stage of the judge units of a suite (above 0: they receive inputs).
pub const JUDGE_STAGE: u32 = 1;

/// Whether a unit of `kind` in `group` waits for the `evaluate` units of that group.
pub fn waits_for_evaluation(kind: UnitKind, group: u32) -> bool {
    kind == UnitKind::Judge && group != LABELS_GROUP
}

/// The items of slice `k` when `n` items are cut into `slices` contiguous, near-equal parts
/// (a scan unit's share of the units).
pub fn share(n: usize, k: usize, slices: usize) -> std::ops::Range<usize> {
    let s = slices.max(1);
    let k = k.min(s);
    (n * k / s)..(n * (k + 1) / s).min(n)
}

/// Whether unit `a` must wait for unit `b`'s result (and receives it as an input).
pub fn depends_on(a: &Planned, b: &Planned) -> bool {
    (a.kind == b.kind && a.group == b.group && b.stage < a.stage)
        || (waits_for_evaluation(a.kind, a.group)
            && b.kind == UnitKind::Evaluate
            && a.group == b.group)
}

/// What a worker is asked to do: one unit of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitSpec {
    /// The sweep this unit belongs to.
    pub sweep_id: String,
    /// The unit's id.
    pub unit_id: String,
    /// The sweep's spec text.
    pub spec_text: String,
    /// The spec file's path (relative paths in the spec resolve against its directory).
    pub spec_path: String,
    /// What the unit does (absent on the wire: `evaluate`).
    #[serde(default, skip_serializing_if = "is_evaluate")]
    pub kind: UnitKind,
    /// Its group (see [`Planned::group`]).
    #[serde(default)]
    pub group: usize,
    /// Its stage (see [`Planned::stage`]).
    #[serde(default)]
    pub stage: usize,
    /// Index of the variant in the spec (0 is the reference), or the kind's own index.
    pub variant: usize,
    /// Index of the suite in the spec.
    pub suite: usize,
    /// First prompt of the range (a scan's slice index).
    pub start: usize,
    /// One past the last prompt of the range (a scan's number of slices).
    pub end: usize,
    /// The reference's outputs on this suite (variant units of generation suites).
    pub reference: Option<ReferenceWire>,
    /// The analysis results of the units this one depends on, in plan order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<serde_json::Value>,
    /// When the sweep started (RFC 3339): the day chat templates render unless the spec's
    /// `[chat] date` pins one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

impl UnitSpec {
    /// The description of planned unit `p` of a sweep, with the results of the units it
    /// depends on (in plan order): an evaluate unit receives the reference's outputs merged,
    /// an analysis unit the analysis results.
    pub fn new(
        sweep_id: &str,
        ordinal: u32,
        spec: (&str, &str),
        p: &Planned,
        deps: &[&UnitResult],
    ) -> UnitSpec {
        let (reference, inputs) = match p.kind {
            UnitKind::Evaluate => (
                ReferenceWire::merge(deps.iter().filter_map(|r| r.reference.as_ref())),
                Vec::new(),
            ),
            UnitKind::Judge => (
                None,
                deps.iter()
                    .filter(|r| !r.records.is_empty())
                    .map(|r| serde_json::to_value(&r.records).unwrap_or_default())
                    .collect(),
            ),
            _ => (
                None,
                deps.iter().filter_map(|r| r.analysis.clone()).collect(),
            ),
        };
        UnitSpec {
            sweep_id: sweep_id.to_string(),
            unit_id: UnitId {
                sweep: SweepId(sweep_id.to_string()),
                ordinal,
            }
            .to_string(),
            spec_text: spec.0.to_string(),
            spec_path: spec.1.to_string(),
            kind: p.kind,
            group: p.group as usize,
            stage: p.stage as usize,
            variant: p.variant as usize,
            suite: p.suite as usize,
            start: p.start as usize,
            end: p.end as usize,
            reference,
            inputs,
            started_at: None,
        }
    }

    /// The unit with the sweep's start time.
    pub fn started(mut self, started_at: &str) -> UnitSpec {
        self.started_at = Some(started_at.to_string());
        self
    }
}

fn is_evaluate(k: &UnitKind) -> bool {
    *k == UnitKind::Evaluate
}

/// What a worker returns for a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitResult {
    /// One record per prompt of the range (evaluate units).
    pub records: Vec<Record>,
    /// The evaluated variant (an analysis unit reports the reference).
    pub variant: VariantInfo,
    /// The model and its file integrity (reference and analysis baseline units).
    pub model: Option<ModelInfo>,
    /// The reference's outputs (reference units of generation suites).
    pub reference: Option<ReferenceWire>,
    /// An analysis unit's result, read by later stages and by the aggregation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_ids_round_trip() {
        let id: UnitId = "abc-1f:12".parse().unwrap();
        assert_eq!(id.sweep, SweepId("abc-1f".into()));
        assert_eq!(id.ordinal, 12);
        assert_eq!(id.to_string(), "abc-1f:12");
        assert!("abc".parse::<UnitId>().is_err());
        assert!("abc:x".parse::<UnitId>().is_err());
        for k in UnitKind::ALL {
            assert_eq!(k.as_str().parse::<UnitKind>().unwrap(), k);
        }
    }

    #[test]
    fn shares_partition_the_items() {
        for n in [0, 1, 7, 8, 100] {
            for slices in [1, 3, 8, 13] {
                let parts: Vec<_> = (0..slices).map(|k| share(n, k, slices)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[slices - 1].end, n);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let sizes: Vec<usize> = parts.iter().map(|r| r.len()).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{n} in {slices}: {sizes:?}");
            }
        }
    }

    #[test]
    fn stages_order_dependencies_within_a_group() {
        let u = |kind, group, stage| Planned {
            kind,
            group,
            stage,
            variant: 0,
            suite: 0,
            start: 0,
            end: 0,
        };
        let reference = u(UnitKind::Evaluate, 1, 0);
        let variant = u(UnitKind::Evaluate, 1, 1);
        let other_suite = u(UnitKind::Evaluate, 2, 1);
        assert!(depends_on(&variant, &reference));
        assert!(!depends_on(&reference, &variant));
        assert!(!depends_on(&other_suite, &reference));
        assert!(!depends_on(&u(UnitKind::Heads, 1, 1), &reference));
        assert!(depends_on(
            &u(UnitKind::Heads, 0, 2),
            &u(UnitKind::Heads, 0, 0)
        ));
        assert!(depends_on(
            &u(UnitKind::Heads, 0, 2),
            &u(UnitKind::Heads, 0, 1)
        ));
        // A suite's judge units wait for all its evaluate units; the labelled sample's
        // judge units wait for nothing.
        let judge = u(UnitKind::Judge, 1, JUDGE_STAGE);
        assert!(depends_on(&judge, &reference));
        assert!(depends_on(&judge, &variant));
        assert!(!depends_on(&judge, &other_suite));
        assert!(!depends_on(&reference, &judge));
        let labels = u(UnitKind::Judge, LABELS_GROUP, 0);
        assert!(!depends_on(&labels, &reference));
        assert!(!depends_on(&labels, &judge));
    }
}
