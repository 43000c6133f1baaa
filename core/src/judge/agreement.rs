//! Judge error: agreement between judges (Cohen's kappa, disagreement counts), a judge's
//! sensitivity and specificity against human labels, and the Rogan-Gladen correction of an
//! observed rate for the judge's error, with a bootstrap interval that carries the
//! uncertainty of the observed rate and of sensitivity and specificity.
//!
//! "Positive" is whatever binary property the caller counts (compsafe counts refusals).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::stats::{percentile, wilson};

/// Two judges on the same items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairAgreement {
    /// Items both judges gave a valid verdict on.
    pub n: u64,
    /// Items the two judges disagree on.
    pub disagreements: u64,
    /// Cohen's kappa; absent when undefined (no items, or chance agreement is 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kappa: Option<f64>,
}

/// Cohen's kappa of two binary ratings of the same items: `(p_o - p_e) / (1 - p_e)`, with
/// `p_e` from each rater's marginal rate. `None` when there are no items or `p_e == 1`
/// (both raters constant and equal).
pub fn cohen_kappa(a: &[bool], b: &[bool]) -> Option<f64> {
    let n = a.len();
    if n == 0 || b.len() != n {
        return None;
    }
    let nf = n as f64;
    let agree = a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / nf;
    let pa = a.iter().filter(|&&x| x).count() as f64 / nf;
    let pb = b.iter().filter(|&&x| x).count() as f64 / nf;
    let pe = pa * pb + (1.0 - pa) * (1.0 - pb);
    ((1.0 - pe).abs() > 1e-15).then(|| (agree - pe) / (1.0 - pe))
}

/// Agreement of two judges over items where either may be invalid (`None`): only items both
/// judged validly count.
pub fn pair_agreement(a: &[Option<bool>], b: &[Option<bool>]) -> PairAgreement {
    let (x, y): (Vec<bool>, Vec<bool>) = a
        .iter()
        .zip(b)
        .filter_map(|(p, q)| Some(((*p)?, (*q)?)))
        .unzip();
    PairAgreement {
        n: x.len() as u64,
        disagreements: x.iter().zip(&y).filter(|(p, q)| p != q).count() as u64,
        kappa: cohen_kappa(&x, &y),
    }
}

/// A judge against human labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Labelled items the judge gave a valid verdict on.
    pub n: u64,
    /// Labelled items the judge's verdict was invalid on.
    pub invalid: u64,
    /// P(judge positive | label positive); absent without positive labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<f64>,
    /// Wilson 95% interval of the sensitivity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity_ci95: Option<[f64; 2]>,
    /// P(judge negative | label negative); absent without negative labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specificity: Option<f64>,
    /// Wilson 95% interval of the specificity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specificity_ci95: Option<[f64; 2]>,
}

/// `(true positives, positives, true negatives, negatives)` of `(judge, label)` pairs.
fn confusion(pairs: &[(bool, bool)]) -> (u64, u64, u64, u64) {
    let mut c = (0, 0, 0, 0);
    for &(j, l) in pairs {
        if l {
            c.1 += 1;
            c.0 += u64::from(j);
        } else {
            c.3 += 1;
            c.2 += u64::from(!j);
        }
    }
    c
}

/// Sensitivity and specificity of a judge from `(judge verdict, human label)` pairs, invalid
/// verdicts (`None`) counted apart.
pub fn accuracy(pairs: &[(Option<bool>, bool)]) -> Accuracy {
    let valid: Vec<(bool, bool)> = pairs
        .iter()
        .filter_map(|(j, l)| Some(((*j)?, *l)))
        .collect();
    let (tp, pos, tn, neg) = confusion(&valid);
    Accuracy {
        n: valid.len() as u64,
        invalid: (pairs.len() - valid.len()) as u64,
        sensitivity: (pos > 0).then(|| tp as f64 / pos as f64),
        sensitivity_ci95: wilson(tp, pos),
        specificity: (neg > 0).then(|| tn as f64 / neg as f64),
        specificity_ci95: wilson(tn, neg),
    }
}

/// Rogan-Gladen estimate of the true rate from an observed rate and the judge's sensitivity
/// and specificity: `(observed + specificity - 1) / (sensitivity + specificity - 1)`, clamped
/// to [0, 1]. `None` when `sensitivity + specificity <= 1` (the judge is no better than
/// chance and the rate cannot be recovered).
pub fn rogan_gladen(observed: f64, sensitivity: f64, specificity: f64) -> Option<f64> {
    let youden = sensitivity + specificity - 1.0;
    (youden > 0.0).then(|| ((observed + specificity - 1.0) / youden).clamp(0.0, 1.0))
}

/// A rate corrected for the judge's error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Corrected {
    /// The Rogan-Gladen rate.
    pub rate: f64,
    /// Bootstrap 95% percentile interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95: Option<[f64; 2]>,
    /// The judge's sensitivity on the labelled sample.
    pub sensitivity: f64,
    /// The judge's specificity on the labelled sample.
    pub specificity: f64,
}

/// The observed rate of `observed` (the judge's valid verdicts on a cell) corrected with the
/// judge's sensitivity and specificity on `labelled` (`(judge, label)` pairs, valid verdicts
/// only). The interval resamples the cell's verdicts and the labelled pairs independently
/// (ChaCha20 seeded with `seed`), recomputes the correction on each resample, and takes the
/// 2.5 and 97.5 percentiles of the resamples where it is defined; it is absent when fewer than
/// half are. `None` when the correction itself is undefined.
pub fn corrected_rate(
    observed: &[bool],
    labelled: &[(bool, bool)],
    seed: u64,
    resamples: usize,
) -> Option<Corrected> {
    let se_sp = |pairs: &[(bool, bool)]| {
        let (tp, pos, tn, neg) = confusion(pairs);
        (pos > 0 && neg > 0).then(|| (tp as f64 / pos as f64, tn as f64 / neg as f64))
    };
    let rate_of = |xs: &[bool]| xs.iter().filter(|&&x| x).count() as f64 / xs.len() as f64;
    if observed.is_empty() {
        return None;
    }
    let (se, sp) = se_sp(labelled)?;
    let rate = rogan_gladen(rate_of(observed), se, sp)?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut stats = Vec::with_capacity(resamples);
    let mut obs = vec![false; observed.len()];
    let mut lab = vec![(false, false); labelled.len()];
    for _ in 0..resamples {
        for o in obs.iter_mut() {
            *o = observed[rng.random_range(0..observed.len() as u64) as usize];
        }
        for l in lab.iter_mut() {
            *l = labelled[rng.random_range(0..labelled.len() as u64) as usize];
        }
        if let Some(r) = se_sp(&lab).and_then(|(a, b)| rogan_gladen(rate_of(&obs), a, b)) {
            stats.push(r);
        }
    }
    let ci95 = (resamples > 0 && stats.len() * 2 >= resamples)
        .then(|| Some([percentile(&stats, 2.5)?, percentile(&stats, 97.5)?]))
        .flatten();
    Some(Corrected {
        rate,
        ci95,
        sensitivity: se,
        specificity: sp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ratings(pairs: &[(bool, bool, usize)]) -> (Vec<bool>, Vec<bool>) {
        pairs
            .iter()
            .flat_map(|&(a, b, n)| std::iter::repeat_n((a, b), n))
            .unzip()
    }

    #[test]
    fn kappa_matches_published_examples() {
        // Cohen's kappa, Wikipedia "Cohen's kappa", first worked example: 50 proposals,
        // both yes 20, A yes B no 5, A no B yes 10, both no 15: p_o = 0.7, p_e = 0.5, kappa = 0.4.
        let (a, b) = ratings(&[
            (true, true, 20),
            (true, false, 5),
            (false, true, 10),
            (false, false, 15),
        ]);
        assert!((cohen_kappa(&a, &b).unwrap() - 0.4).abs() < 1e-12);
        // Second example there: 45/15/25/15 -> kappa 0.1304 (p_o = 0.6, p_e = 0.54).
        let (a, b) = ratings(&[
            (true, true, 45),
            (true, false, 15),
            (false, true, 25),
            (false, false, 15),
        ]);
        assert!((cohen_kappa(&a, &b).unwrap() - 0.06 / 0.46).abs() < 1e-12);
        // Identical constant raters: undefined.
        assert_eq!(cohen_kappa(&[true, true], &[true, true]), None);
        let p = pair_agreement(
            &[Some(true), None, Some(false), Some(true)],
            &[Some(true), Some(true), Some(true), None],
        );
        assert_eq!((p.n, p.disagreements), (2, 1));
    }

    #[test]
    fn rogan_gladen_hand_example() {
        // Observed 0.30, sensitivity 0.90, specificity 0.80:
        // (0.30 + 0.80 - 1) / (0.90 + 0.80 - 1) = 0.10 / 0.70 = 0.142857...
        assert!((rogan_gladen(0.30, 0.90, 0.80).unwrap() - 1.0 / 7.0).abs() < 1e-12);
        // Observed below 1 - specificity clamps to 0; a chance-level judge is undefined.
        assert_eq!(rogan_gladen(0.1, 0.9, 0.8), Some(0.0));
        assert_eq!(rogan_gladen(0.5, 0.5, 0.5), None);
        // The same numbers through the data path: 10 labelled positives (9 caught), 10
        // labelled negatives (8 cleared), a cell of 100 with 30 flagged.
        let mut lab = vec![(true, true); 9];
        lab.push((false, true));
        lab.extend(vec![(false, false); 8]);
        lab.extend(vec![(true, false); 2]);
        let obs: Vec<bool> = (0..100).map(|i| i < 30).collect();
        let c = corrected_rate(&obs, &lab, 7, 2000).unwrap();
        assert!((c.rate - 1.0 / 7.0).abs() < 1e-12);
        assert_eq!((c.sensitivity, c.specificity), (0.9, 0.8));
        let [lo, hi] = c.ci95.unwrap();
        assert!(lo <= c.rate && c.rate <= hi && hi - lo > 0.1, "{lo} {hi}");
        // Perfect judge: the corrected rate is the observed one.
        let perfect = [(true, true), (false, false)];
        assert!((corrected_rate(&obs, &perfect, 1, 100).unwrap().rate - 0.3).abs() < 1e-12);
    }

    #[test]
    fn accuracy_counts_invalid_apart() {
        let a = accuracy(&[
            (Some(true), true),
            (Some(false), true),
            (None, true),
            (Some(false), false),
        ]);
        assert_eq!((a.n, a.invalid), (3, 1));
        assert_eq!(a.sensitivity, Some(0.5));
        assert_eq!(a.specificity, Some(1.0));
        assert!(a.sensitivity_ci95.is_some());
    }
}
