//! Tests of cell computation.

use super::*;
use crate::judge::Verdict;
use crate::report::TokenKld;

pub(crate) fn rec(variant: &str, id: usize, verdict: Verdict) -> Record {
    Record {
        variant: variant.into(),
        suite: "harmful".into(),
        prompt_id: id.to_string(),
        prompt: format!("prompt {id}"),
        response: Some(format!("{variant} says {verdict}")),
        verdict: Some(verdict),
        refused: Some(verdict == Verdict::Refusal),
        ..Record::default()
    }
}

pub(crate) fn opts() -> CellOptions {
    CellOptions {
        seed: 42,
        resamples: 2000,
    }
}

/// Reference refuses 9 of 10; the variant keeps 1 of those refusals, answers 7, collapses
/// on 1, and refuses the one the reference answered.
pub(crate) fn example() -> (Vec<Record>, Vec<Record>) {
    use Verdict::*;
    let r: Vec<Record> = (0..10)
        .map(|i| {
            let mut x = rec("fp32", i, if i == 9 { Compliance } else { Refusal });
            x.refusal_logodds = Some(3.0 - i as f64 * 0.5);
            x
        })
        .collect();
    let v: Vec<Record> = (0..10)
        .map(|i| {
            let verdict = match i {
                0 => Refusal,
                8 => Degenerate,
                9 => Refusal,
                _ => Compliance,
            };
            let mut x = rec("int2", i, verdict);
            x.kld = Some(TokenKld {
                values: vec![0.1 * i as f32, 0.2],
                same_top: 1,
            });
            x
        })
        .collect();
    (r, v)
}

#[test]
fn cell_against_hand_computed_values() {
    let (r, v) = example();
    let reference = build_cell("fp32", "harmful", Expect::Refusal, &r, None, &opts()).unwrap();
    assert_eq!(reference.refusal_rate, Some(0.9));
    assert!(reference.vs_reference.is_none());
    assert!(reference.asr.is_none() && reference.accuracy.is_none());

    let c = build_cell("int2", "harmful", Expect::Refusal, &v, Some(&r), &opts()).unwrap();
    assert_eq!(c.n, 10);
    assert_eq!(c.refusal_rate, Some(0.2));
    assert_eq!(c.compliance_rate, Some(0.7));
    assert_eq!(c.degenerate_rate, Some(0.1));
    // Wilson 2/10 (hand-computed with z = 1.959963984540054): [0.0566821, 0.5098375].
    let [lo, hi] = c.refusal_ci95.unwrap();
    assert!((lo - 0.056_682_151_6).abs() < 1e-8 && (hi - 0.509_837_528_7).abs() < 1e-8);
    let vs = c.vs_reference.as_ref().unwrap();
    assert!((vs.delta - (-0.7)).abs() < 1e-12);
    // Discordant pairs: b = 8 refused only by the reference, c = 1 only by the variant:
    // p = 2 * (1 + 9) / 512 = 0.0390625.
    assert!((vs.mcnemar_p.unwrap() - 0.039_062_5).abs() < 1e-15);
    assert_eq!(vs.refuse_to_comply, Some(7));
    assert_eq!(vs.refuse_to_degenerate, Some(1));
    assert_eq!(vs.comply_to_refuse, Some(1));
    assert!(vs.delta_ci95[0] <= vs.delta && vs.delta <= vs.delta_ci95[1]);
    assert!(vs.delta_ci95[1] < 0.0);
    let l = c.logits.as_ref().unwrap();
    // 20 token values: 0.0..0.9 step 0.1 and ten 0.2 -> mean (4.5 + 2.0) / 20 = 0.325.
    assert!((l.kld_mean.unwrap() - 0.325).abs() < 1e-6);
    assert_eq!(l.same_top, Some(0.5));
    // Deterministic: the same inputs give the same cell.
    assert_eq!(
        c,
        build_cell("int2", "harmful", Expect::Refusal, &v, Some(&r), &opts()).unwrap()
    );
}

#[test]
fn pairing_is_by_prompt_id_and_checked() {
    let (r, mut v) = example();
    v.reverse();
    let c = build_cell("int2", "harmful", Expect::Refusal, &v, Some(&r), &opts()).unwrap();
    assert_eq!(c.vs_reference.unwrap().refuse_to_comply, Some(7));
    v.pop();
    assert!(build_cell("int2", "harmful", Expect::Refusal, &v, Some(&r), &opts()).is_err());
    let mut dup = v.clone();
    dup.push(v[0].clone());
    assert!(pair(&dup, &r).is_err());
    assert!(build_cell("x", "harmful", Expect::Refusal, &v, None, &opts()).is_err());
}

#[test]
fn divergences_rank_low_confidence_first() {
    let (r, v) = example();
    let ds = divergences(Expect::Refusal, &v, &r).unwrap();
    assert_eq!(ds.len(), 9);
    // Reference log-odds 3.0 - 0.5 i: |.| smallest at i = 6 (0.0), then 5 and 7 (0.5).
    let ids: Vec<&str> = ds.iter().map(|d| d.prompt_id.as_str()).collect();
    assert_eq!(ids[..3], ["6", "5", "7"]);
    let d8 = ds.iter().find(|d| d.prompt_id == "8").unwrap();
    assert_eq!(d8.direction, Direction::RefuseToDegenerate);
    let d9 = ds.iter().find(|d| d.prompt_id == "9").unwrap();
    assert_eq!(d9.direction, Direction::ComplyToRefuse);
    assert!(ds.iter().all(|d| d.prompt_id != "0"));
}

#[test]
fn multiple_choice_and_label_cells() {
    let mk = |variant: &str, mc1: f64, mc2: f64, id: usize| Record {
        variant: variant.into(),
        suite: "tqa".into(),
        prompt_id: id.to_string(),
        mc1: Some(mc1),
        mc2: Some(mc2),
        ..Record::default()
    };
    let r: Vec<Record> = (0..4).map(|i| mk("fp32", 1.0, 0.8, i)).collect();
    let v: Vec<Record> = (0..4)
        .map(|i| mk("int4", if i < 2 { 1.0 } else { 0.0 }, 0.6, i))
        .collect();
    let c = build_cell("int4", "tqa", Expect::MultipleChoice, &v, Some(&r), &opts()).unwrap();
    assert_eq!(c.mc1, Some(0.5));
    assert!((c.mc2.unwrap() - 0.6).abs() < 1e-12);
    assert_eq!(c.accuracy, c.mc2);
    assert!(c.refusal_rate.is_none() && c.compliance_rate.is_none());
    let vs = c.vs_reference.unwrap();
    assert_eq!(vs.metric, "mc2");
    assert!((vs.delta + 0.2).abs() < 1e-12);
    assert!((vs.mcnemar_p.unwrap() - 0.5).abs() < 1e-15); // b = 2, c = 0: 2 * 1/4
    assert!(vs.refuse_to_comply.is_none());

    let lab = |variant: &str, ok: bool, id: usize| Record {
        label_correct: Some(ok),
        ..rec(variant, id, Verdict::Compliance)
    };
    let r: Vec<Record> = (0..5).map(|i| lab("fp32", true, i)).collect();
    let v: Vec<Record> = (0..5).map(|i| lab("int4", i != 0, i)).collect();
    let c = build_cell("int4", "harmful", Expect::Label, &v, Some(&r), &opts()).unwrap();
    assert_eq!(c.accuracy, Some(0.8));
    assert!(c.refusal_rate.is_none());
    assert_eq!(c.compliance_rate, Some(1.0));
}

#[test]
fn holm_across_cells() {
    let (r, v) = example();
    let mut cells = vec![
        build_cell("fp32", "harmful", Expect::Refusal, &r, None, &opts()).unwrap(),
        build_cell("int2", "harmful", Expect::Refusal, &v, Some(&r), &opts()).unwrap(),
        build_cell(
            "fp32b",
            "harmful",
            Expect::Refusal,
            &r.iter()
                .map(|x| Record {
                    variant: "fp32b".into(),
                    ..x.clone()
                })
                .collect::<Vec<_>>(),
            Some(&r),
            &opts(),
        )
        .unwrap(),
    ];
    apply_holm(&mut cells);
    assert!(cells[0].vs_reference.is_none());
    let p1 = cells[1].vs_reference.as_ref().unwrap();
    // Two p-values {0.0390625, 1}: Holm gives 2 * 0.0390625 and 1.
    assert!((p1.mcnemar_p_holm.unwrap() - 0.078_125).abs() < 1e-15);
    assert_eq!(
        cells[2].vs_reference.as_ref().unwrap().mcnemar_p_holm,
        Some(1.0)
    );
}
