//! Statistics for paired comparisons of a compressed variant with its reference: Wilson score
//! intervals, the exact McNemar test, a seeded paired bootstrap, Holm–Bonferroni adjustment,
//! and small summary helpers.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// The 0.975 quantile of the standard normal distribution (two-sided 95%).
pub const Z95: f64 = 1.959_963_984_540_054;

/// Default number of bootstrap resamples.
pub const DEFAULT_RESAMPLES: usize = 2000;

/// Wilson score 95% interval for `successes` out of `n`; `None` when `n == 0`.
pub fn wilson(successes: u64, n: u64) -> Option<[f64; 2]> {
    wilson_z(successes, n, Z95)
}

/// Wilson score interval with an explicit normal quantile `z`.
pub fn wilson_z(successes: u64, n: u64, z: f64) -> Option<[f64; 2]> {
    if n == 0 || successes > n {
        return None;
    }
    let n_f = n as f64;
    let p = successes as f64 / n_f;
    let z2 = z * z;
    let denom = 1.0 + z2 / n_f;
    let centre = (p + z2 / (2.0 * n_f)) / denom;
    let half = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt() / denom;
    // At p = 0 or 1 the bound is exactly 0 or 1; clamp rounding noise.
    let lo = if successes == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if successes == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    Some([lo, hi])
}

/// `P(X <= k)` for `X ~ Binomial(n, 1/2)`, computed in log space so that large `n` does not
/// underflow.
pub fn binom_half_cdf(k: u64, n: u64) -> f64 {
    if k >= n {
        return 1.0;
    }
    // ln pmf(0) = -n ln 2; pmf(i+1) = pmf(i) * (n - i) / (i + 1).
    let ln2 = std::f64::consts::LN_2;
    let mut lp = -(n as f64) * ln2;
    let mut terms = Vec::with_capacity(k as usize + 1);
    terms.push(lp);
    for i in 0..k {
        lp += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
        terms.push(lp);
    }
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    (max + s.ln()).exp().min(1.0)
}

/// Exact (binomial) McNemar test, two-sided: with `b` and `c` the discordant counts,
/// `p = min(1, 2 P(X <= min(b, c)))`, `X ~ Binomial(b + c, 1/2)`; `p = 1` when `b + c = 0`.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    (2.0 * binom_half_cdf(b.min(c), n)).min(1.0)
}

/// Counts of a paired binary outcome: reference first, variant second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairedCounts {
    /// Both true.
    pub both: u64,
    /// True for the reference only (the discordant pair `b`).
    pub reference_only: u64,
    /// True for the variant only (the discordant pair `c`).
    pub variant_only: u64,
    /// Both false.
    pub neither: u64,
}

impl PairedCounts {
    /// Tallies paired outcomes; `None` if the slices differ in length.
    pub fn from_pairs(reference: &[bool], variant: &[bool]) -> Option<PairedCounts> {
        if reference.len() != variant.len() {
            return None;
        }
        let mut c = PairedCounts::default();
        for (&r, &v) in reference.iter().zip(variant) {
            match (r, v) {
                (true, true) => c.both += 1,
                (true, false) => c.reference_only += 1,
                (false, true) => c.variant_only += 1,
                (false, false) => c.neither += 1,
            }
        }
        Some(c)
    }

    /// Number of pairs.
    pub fn n(&self) -> u64 {
        self.both + self.reference_only + self.variant_only + self.neither
    }

    /// Exact McNemar p-value of these counts.
    pub fn mcnemar_p(&self) -> f64 {
        mcnemar_exact(self.reference_only, self.variant_only)
    }

    /// Variant rate minus reference rate; `None` for no pairs.
    pub fn delta(&self) -> Option<f64> {
        let n = self.n();
        (n > 0).then(|| (self.variant_only as f64 - self.reference_only as f64) / n as f64)
    }
}

/// Percentile with linear interpolation between order statistics (numpy's default,
/// `method="linear"`); `q` in [0, 100]. `None` for empty input or NaN present.
pub fn percentile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|x| x.is_nan()) || !(0.0..=100.0).contains(&q) {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    Some(percentile_sorted(&v, q))
}

fn percentile_sorted(v: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    v[lo] + (v[hi] - v[lo]) * frac
}

/// Area under the ROC curve of `scores` for separating `positive` items from the rest
/// (Mann-Whitney: the probability that a random positive outscores a random negative, ties
/// counting one half). `None` without both classes or with a non-finite score.
pub fn auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    if scores.len() != positive.len() || scores.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let pos: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|p| *p.1)
        .map(|p| *p.0)
        .collect();
    let neg: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|p| !*p.1)
        .map(|p| *p.0)
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for p in &pos {
        for n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (pos.len() * neg.len()) as f64)
}

/// Arithmetic mean; `None` for empty input.
pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// 99th percentile (linear interpolation); `None` for empty input.
pub fn p99(xs: &[f64]) -> Option<f64> {
    percentile(xs, 99.0)
}

/// Seeded paired bootstrap percentile interval (2.5, 97.5) for `mean(variant) -
/// mean(reference)`: prompt indices are resampled with replacement, the pairing kept.
///
/// The generator is ChaCha20 seeded with `seed` and indices are drawn as `u64`, so the
/// interval is the same on every platform. `None` for empty or unequal inputs, or
/// `resamples == 0`.
pub fn paired_bootstrap_mean_diff(
    reference: &[f64],
    variant: &[f64],
    seed: u64,
    resamples: usize,
) -> Option<[f64; 2]> {
    let n = reference.len();
    if n == 0 || variant.len() != n || resamples == 0 {
        return None;
    }
    let diffs: Vec<f64> = variant.iter().zip(reference).map(|(v, r)| v - r).collect();
    bootstrap_mean(&diffs, seed, resamples)
}

/// Seeded bootstrap percentile interval (2.5, 97.5) of the mean of `xs`.
pub fn bootstrap_mean(xs: &[f64], seed: u64, resamples: usize) -> Option<[f64; 2]> {
    let n = xs.len();
    if n == 0 || resamples == 0 || xs.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let mut s = 0.0;
        for _ in 0..n {
            let i = rng.random_range(0..n as u64) as usize;
            s += xs[i];
        }
        stats.push(s / n as f64);
    }
    stats.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    Some([
        percentile_sorted(&stats, 2.5),
        percentile_sorted(&stats, 97.5),
    ])
}

/// Paired bootstrap interval of the difference of two paired binary rates
/// (variant rate minus reference rate).
pub fn paired_bootstrap_diff(
    reference: &[bool],
    variant: &[bool],
    seed: u64,
    resamples: usize,
) -> Option<[f64; 2]> {
    let r: Vec<f64> = reference.iter().map(|&b| f64::from(u8::from(b))).collect();
    let v: Vec<f64> = variant.iter().map(|&b| f64::from(u8::from(b))).collect();
    paired_bootstrap_mean_diff(&r, &v, seed, resamples)
}

/// Holm–Bonferroni adjusted p-values, in the input order: with the p-values sorted
/// ascending, `adj_(i) = min(1, max_{j <= i} (m - j) p_(j))` (0-based `j`). NaN inputs are
/// treated as 1.
pub fn holm(pvalues: &[f64]) -> Vec<f64> {
    let m = pvalues.len();
    let clean: Vec<f64> = pvalues
        .iter()
        .map(|&p| if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) })
        .collect();
    let mut order: Vec<usize> = (0..m).collect();
    // Stable sort: ties keep input order, so the result does not depend on it.
    order.sort_by(|&a, &b| clean[a].partial_cmp(&clean[b]).expect("no NaN"));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let adj = ((m - rank) as f64 * clean[i]).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_by_hand() {
        // Positives 0.9, 0.4; negatives 0.5, 0.1: pairs won (0.9>0.5, 0.9>0.1, 0.4>0.1),
        // lost (0.4<0.5): 3/4.
        assert_eq!(
            auc(&[0.9, 0.5, 0.4, 0.1], &[true, false, true, false]),
            Some(0.75)
        );
        assert_eq!(auc(&[1.0, 1.0], &[true, false]), Some(0.5));
        assert_eq!(auc(&[1.0, 2.0], &[true, true]), None);
    }
    use proptest::prelude::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), "Two-sided confidence intervals for the single proportion",
        // Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score, no continuity
        // correction), four decimals.
        let cases = [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718),
        ];
        for (x, n, lo, hi) in cases {
            let [l, h] = wilson(x, n).unwrap();
            assert!(close(l, lo, 5e-5) && close(h, hi, 5e-5), "{x}/{n}: {l} {h}");
        }
        // Hand-computed (closed form with z = 1.959963984540054; identical to
        // statsmodels proportion_confint(8, 10, method="wilson")).
        let [l, h] = wilson(8, 10).unwrap();
        assert!(close(l, 0.490_162_471_5, 1e-9), "{l}");
        assert!(close(h, 0.943_317_848_5, 1e-9), "{h}");
        let [l, h] = wilson(0, 10).unwrap();
        assert_eq!(l, 0.0);
        assert!(close(h, 0.277_532_799_9, 1e-9), "{h}");
        let [l, h] = wilson(10, 10).unwrap();
        assert!(close(l, 0.722_467_200_1, 1e-9), "{l}");
        assert_eq!(h, 1.0);
        assert_eq!(wilson(0, 0), None);
        assert_eq!(wilson(3, 2), None);
    }

    #[test]
    fn mcnemar_exact_values() {
        // b=1, c=9: 2 * (C(10,0) + C(10,1)) / 2^10 = 22/1024.
        assert!(close(mcnemar_exact(1, 9), 22.0 / 1024.0, 1e-15));
        assert!(close(mcnemar_exact(9, 1), 22.0 / 1024.0, 1e-15));
        // b=0, c=5: 2 / 32.
        assert!(close(mcnemar_exact(0, 5), 0.0625, 1e-15));
        // b=3, c=3: capped at 1.
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // b=2, c=12: 2 * (1 + 14 + 91) / 16384 = 212 / 16384.
        assert!(close(mcnemar_exact(2, 12), 212.0 / 16384.0, 1e-15));
        // Large n stays finite: b=0, c=2000 -> 2^-1999, far below f64's normal range but
        // representable as 0 or a subnormal, never NaN.
        assert!(mcnemar_exact(0, 2000) < 1e-300);
        assert!(close(mcnemar_exact(500, 500), 1.0, 1e-12));
    }

    #[test]
    fn holm_known_example() {
        // Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06.
        let adj = holm(&[0.01, 0.04, 0.03, 0.005]);
        let want = [0.03, 0.06, 0.06, 0.02];
        for (a, w) in adj.iter().zip(want) {
            assert!(close(*a, w, 1e-12), "{adj:?}");
        }
        assert_eq!(holm(&[0.5, 0.9]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.percentile([1,2,3,4], 99) = 3.97 ; [1..=100] p99 = 99.01
        assert!(close(
            percentile(&[4.0, 1.0, 3.0, 2.0], 99.0).unwrap(),
            3.97,
            1e-12
        ));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!(close(p99(&v).unwrap(), 99.01, 1e-12));
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(mean(&[]), None);
        assert_eq!(p99(&[]), None);
    }

    #[test]
    fn bootstrap_is_reproducible_and_sensible() {
        let r: Vec<bool> = (0..50).map(|i| i % 5 != 0).collect(); // 40/50 refuse
        let v: Vec<bool> = (0..50).map(|i| i % 2 == 0).collect(); // 25/50 refuse
        let a = paired_bootstrap_diff(&r, &v, 7, 2000).unwrap();
        let b = paired_bootstrap_diff(&r, &v, 7, 2000).unwrap();
        assert_eq!(a, b);
        let delta = 25.0 / 50.0 - 40.0 / 50.0;
        assert!(a[0] <= delta && delta <= a[1], "{a:?}");
        assert!(
            a[1] < 0.0,
            "a drop of 30 points on 50 prompts is clear: {a:?}"
        );
        // Identical outcomes: zero-width interval at 0.
        assert_eq!(paired_bootstrap_diff(&r, &r, 1, 100).unwrap(), [0.0, 0.0]);
        assert_eq!(paired_bootstrap_diff(&[], &[], 1, 100), None);
        assert_eq!(paired_bootstrap_diff(&[true], &[], 1, 100), None);
    }

    #[test]
    fn paired_counts() {
        let r = [true, true, false, false, true];
        let v = [true, false, true, false, false];
        let c = PairedCounts::from_pairs(&r, &v).unwrap();
        assert_eq!(
            (c.both, c.reference_only, c.variant_only, c.neither),
            (1, 2, 1, 1)
        );
        assert!(close(c.delta().unwrap(), -0.2, 1e-12));
        assert!(close(c.mcnemar_p(), 1.0, 1e-12));
    }

    proptest! {
        #[test]
        fn bootstrap_contains_point_estimate(
            pairs in proptest::collection::vec((any::<bool>(), any::<bool>()), 20..120),
            seed in any::<u64>(),
        ) {
            let r: Vec<bool> = pairs.iter().map(|p| p.0).collect();
            let v: Vec<bool> = pairs.iter().map(|p| p.1).collect();
            let [lo, hi] = paired_bootstrap_diff(&r, &v, seed, 500).unwrap();
            let c = PairedCounts::from_pairs(&r, &v).unwrap();
            let d = c.delta().unwrap();
            prop_assert!(lo <= d + 1e-12 && d <= hi + 1e-12, "{} not in [{}, {}]", d, lo, hi);
            prop_assert!((-1.0..=1.0).contains(&lo) && (-1.0..=1.0).contains(&hi));
        }

        #[test]
        fn holm_dominates_raw_and_is_order_independent(
            ps in proptest::collection::vec(0.0f64..=1.0, 0..30),
            rot in 0usize..30,
        ) {
            let adj = holm(&ps);
            for (a, p) in adj.iter().zip(&ps) {
                prop_assert!(*a >= *p && *a <= 1.0);
            }
            // Monotone: a smaller raw p never gets a larger adjusted p.
            for i in 0..ps.len() {
                for j in 0..ps.len() {
                    if ps[i] < ps[j] {
                        prop_assert!(adj[i] <= adj[j]);
                    }
                }
            }
            // Permuting the input permutes the output.
            if !ps.is_empty() {
                let k = rot % ps.len();
                let mut rotated = ps.clone();
                rotated.rotate_left(k);
                let mut adj_rot = adj.clone();
                adj_rot.rotate_left(k);
                prop_assert_eq!(holm(&rotated), adj_rot);
            }
        }

        #[test]
        fn wilson_contains_estimate(n in 1u64..500, frac in 0.0f64..=1.0) {
            let x = ((n as f64) * frac).round() as u64;
            let [lo, hi] = wilson(x, n).unwrap();
            let p = x as f64 / n as f64;
            prop_assert!(0.0 <= lo && lo <= p + 1e-12 && p <= hi + 1e-12 && hi <= 1.0);
        }

        #[test]
        fn mcnemar_symmetric_and_bounded(b in 0u64..300, c in 0u64..300) {
            let p = mcnemar_exact(b, c);
            prop_assert!((0.0..=1.0).contains(&p));
            prop_assert_eq!(p, mcnemar_exact(c, b));
        }
    }
}
