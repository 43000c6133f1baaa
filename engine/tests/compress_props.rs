//! Property tests of the compression methods: round-to-nearest is within half a step and
//! idempotent, pruning reaches exactly the sparsity asked for, head ablation touches exactly
//! the heads' columns.

use std::collections::BTreeSet;

use candle_core::{Device, Tensor};
use compsafe_core::{HeadRef, PruneScope};
use compsafe_engine::compress::prune::{count_to_prune, n_of_m_in_place, prune_smallest};
use compsafe_engine::compress::rtn::{fake_quantize, Grid};
use compsafe_engine::compress::{
    Compressor, HeadAblation, HeadLayout, LinearWeight, MagnitudePrune, NofMPrune, Rtn, WeightMap,
};
use proptest::prelude::*;

fn layout() -> HeadLayout {
    HeadLayout {
        num_layers: 1,
        num_heads: 1,
        num_kv_heads: 1,
        head_dim: 1,
    }
}

fn dense_values(w: &LinearWeight) -> Vec<f32> {
    match w {
        LinearWeight::Dense(t) => t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        _ => panic!("expected a dense tensor"),
    }
}

/// A matrix of `rows x cols` values whose magnitude varies by row over many decades, with
/// some exact zeros and repeated values mixed in.
fn matrix(max_rows: usize, cols: usize) -> impl Strategy<Value = (usize, Vec<f32>)> {
    (1..=max_rows).prop_flat_map(move |rows| {
        (
            Just(rows),
            prop::collection::vec(-6i32..=4, rows),
            prop::collection::vec(
                prop_oneof![
                    8 => -1.0f32..1.0,
                    1 => Just(0.0f32),
                    1 => Just(0.5f32),
                    1 => Just(-0.5f32),
                ],
                rows * cols,
            ),
        )
            .prop_map(move |(rows, exps, mut v)| {
                for (r, row) in v.chunks_exact_mut(cols).enumerate() {
                    let f = 10f32.powi(exps[r]);
                    row.iter_mut().for_each(|x| *x *= f);
                }
                (rows, v)
            })
    })
}

/// Checks one quantized group against the properties RTN promises.
fn check_group(orig: &[f32], deq: &[f32], g: &Grid, bits: u8, asym: bool) {
    if g.scale == 0.0 {
        // Degenerate group: stored as zeros, and it was (nearly) zero.
        assert!(deq.iter().all(|&x| x == 0.0));
        assert!(orig.iter().all(|&x| x.abs() < 1e-35), "{orig:?}");
        return;
    }
    let s = f64::from(g.scale);
    let qmax_codes = f64::from((1u32 << bits) - 1);
    let slack = if asym {
        qmax_codes * 2f64.powi(-15) * s
    } else {
        0.0
    };
    for (&w, &x) in orig.iter().zip(deq) {
        // On the integer grid: x / s + z is an integer code within range.
        let code = f64::from(x) / s + f64::from(g.zero);
        assert_eq!(code.fract(), 0.0, "{x} is not on the grid of {g:?}");
        assert!(
            code >= f64::from(g.qmin) && code <= f64::from(g.qmax),
            "{code} {g:?}"
        );
        assert_eq!(g.value(code as i32), x);
        // Within half a step (plus the documented scale-rounding slack at the asymmetric top).
        let err = (f64::from(w) - f64::from(x)).abs();
        assert!(
            err <= s / 2.0 * (1.0 + 1e-12) + slack,
            "|{w} - {x}| = {err} > half step of {s} ({g:?}, bits {bits}, asym {asym})"
        );
    }
    if !asym {
        assert_eq!(g.zero, 0);
        assert_eq!(g.qmax, (1 << (bits - 1)) - 1);
        assert_eq!(g.qmin, -g.qmax);
    } else {
        assert_eq!((g.qmin, g.qmax), (0, (1 << bits) - 1));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rtn_is_within_half_a_step_on_the_grid_and_idempotent(
        bits in 2u8..=8,
        asym in any::<bool>(),
        group_pow in 0u32..=4,
        groups_per_row in 1usize..=4,
        (_rows, orig) in matrix(4, 64),
    ) {
        // Re-cut the 64 generated columns into rows of `cols` (a multiple of the group).
        let group = 1usize << group_pow; // 1..=16
        let cols = group * groups_per_row;
        let n = (orig.len() / cols) * cols;
        prop_assume!(n > 0);
        let orig = &orig[..n];

        let mut deq = orig.to_vec();
        let grids = fake_quantize(&mut deq, cols, group, bits, asym).unwrap();
        prop_assert_eq!(grids.len(), n / group);
        for ((o, d), g) in orig.chunks(group).zip(deq.chunks(group)).zip(&grids) {
            check_group(o, d, g, bits, asym);
        }

        // Quantizing the quantized values again changes nothing, bit for bit.
        let mut again = deq.clone();
        let grids2 = fake_quantize(&mut again, cols, group, bits, asym).unwrap();
        prop_assert_eq!(
            again.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            deq.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        prop_assert_eq!(grids2, grids);
    }

    #[test]
    fn rtn_compressor_matches_the_kernel(
        bits in 2u8..=8,
        asym in any::<bool>(),
        grouped in any::<bool>(),
        (rows, v) in matrix(6, 32),
    ) {
        let mut weights = WeightMap::new();
        weights.insert("a".into(), Tensor::from_vec(v.clone(), (rows, 32), &Device::Cpu).unwrap());
        weights.insert("skip".into(), Tensor::from_vec(v.clone(), (rows, 32), &Device::Cpu).unwrap());
        let group = grouped.then_some(8);
        let c = Rtn::new(bits, group, asym).unwrap().compress(&weights, &|n| n == "a", &layout()).unwrap();
        prop_assert_eq!(c.weights.len(), 1);
        let mut expect = v.clone();
        fake_quantize(&mut expect, 32, group.unwrap_or(32), bits, asym).unwrap();
        prop_assert_eq!(dense_values(&c.weights["a"]), expect);
        let s = c.stat("a").unwrap();
        let g = group.unwrap_or(32) as f64;
        let bpw = f64::from(bits) + if asym { 32.0 } else { 16.0 } / g;
        prop_assert_eq!(s.bits_per_weight, bpw);
        prop_assert_eq!(s.numel, rows * 32);
    }

    #[test]
    fn global_pruning_prunes_exactly_the_smallest(
        amount in 0.0f64..0.999,
        sizes in prop::collection::vec(1usize..=40, 1..=5),
        // Few distinct magnitudes, so ties at the threshold are common.
        pool in prop::collection::vec(prop_oneof![1e-3f32..10.0, Just(0.25f32)], 8),
        picks in prop::collection::vec((0usize..8, any::<bool>()), 200),
    ) {
        let mut it = picks.iter().cycle();
        let tensors: Vec<Vec<f32>> = sizes.iter().map(|&n| {
            (0..n).map(|_| {
                let &(i, neg) = it.next().unwrap();
                if neg { -pool[i] } else { pool[i] }
            }).collect()
        }).collect();
        let total: usize = sizes.iter().sum();
        let k = count_to_prune(amount, total);
        prop_assert_eq!(k, ((amount * total as f64).round_ties_even()) as usize);

        // Reference: sort (|w|, tensor, index) and take the first k.
        let mut order: Vec<(f32, usize, usize)> = tensors.iter().enumerate()
            .flat_map(|(t, v)| v.iter().enumerate().map(move |(i, &w)| (w.abs(), t, i)))
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let gone: BTreeSet<(usize, usize)> = order[..k].iter().map(|&(_, t, i)| (t, i)).collect();

        let mut pruned = tensors.clone();
        {
            let mut parts: Vec<&mut [f32]> = pruned.iter_mut().map(Vec::as_mut_slice).collect();
            prop_assert_eq!(prune_smallest(&mut parts, k), k);
        }
        let mut zeros = 0;
        for (t, (p, o)) in pruned.iter().zip(&tensors).enumerate() {
            for (i, (&x, &w)) in p.iter().zip(o).enumerate() {
                if gone.contains(&(t, i)) {
                    prop_assert_eq!(x, 0.0);
                    zeros += 1;
                } else {
                    prop_assert_eq!(x.to_bits(), w.to_bits());
                }
            }
        }
        prop_assert_eq!(zeros, k);

        // Through the compressor, global and per tensor.
        let mut weights = WeightMap::new();
        for (t, v) in tensors.iter().enumerate() {
            weights.insert(format!("t{t}"), Tensor::from_vec(v.clone(), v.len(), &Device::Cpu).unwrap());
        }
        let c = MagnitudePrune::new(amount, PruneScope::Global).unwrap()
            .compress(&weights, &|_| true, &layout()).unwrap();
        for (t, p) in pruned.iter().enumerate() {
            prop_assert_eq!(&dense_values(&c.weights[&format!("t{t}")]), p);
        }
        let c = MagnitudePrune::new(amount, PruneScope::Layer).unwrap()
            .compress(&weights, &|_| true, &layout()).unwrap();
        for (t, v) in tensors.iter().enumerate() {
            let got = dense_values(&c.weights[&format!("t{t}")]);
            let zeros = got.iter().filter(|&&x| x == 0.0).count();
            prop_assert_eq!(zeros, count_to_prune(amount, v.len()), "tensor t{}", t);
            // Every kept weight is at least as large as every pruned one.
            let kept_min = got.iter().zip(v).filter(|(&x, _)| x != 0.0).map(|(_, w)| w.abs()).fold(f32::INFINITY, f32::min);
            let gone_max = got.iter().zip(v).filter(|(&x, _)| x == 0.0).map(|(_, w)| w.abs()).fold(0.0, f32::max);
            prop_assert!(kept_min >= gone_max);
        }
    }

    #[test]
    fn n_of_m_keeps_exactly_n_largest_per_group(
        (n, m) in (2usize..=8).prop_flat_map(|m| (1..m, Just(m))),
        groups in 1usize..=12,
        rows in 1usize..=3,
        seed in prop::collection::vec(prop_oneof![1e-3f32..5.0, Just(1.0f32)], 96),
        signs in prop::collection::vec(any::<bool>(), 96),
    ) {
        let cols = groups * m;
        let v: Vec<f32> = (0..rows * cols).map(|i| {
            let x = seed[i % seed.len()];
            if signs[(i * 7) % signs.len()] { -x } else { x }
        }).collect();
        let mut p = v.clone();
        n_of_m_in_place(&mut p, n, m);
        for (pg, vg) in p.chunks(m).zip(v.chunks(m)) {
            let kept: Vec<usize> = (0..m).filter(|&i| pg[i] != 0.0).collect();
            prop_assert_eq!(kept.len(), n);
            for &i in &kept {
                prop_assert_eq!(pg[i].to_bits(), vg[i].to_bits());
            }
            let kept_min = kept.iter().map(|&i| vg[i].abs()).fold(f32::INFINITY, f32::min);
            let gone_max = (0..m).filter(|i| !kept.contains(i)).map(|i| vg[i].abs()).fold(0.0, f32::max);
            prop_assert!(kept_min >= gone_max);
        }
        let mut weights = WeightMap::new();
        weights.insert("w".into(), Tensor::from_vec(v.clone(), (rows, cols), &Device::Cpu).unwrap());
        let c = NofMPrune::new(n, m).unwrap().compress(&weights, &|_| true, &layout()).unwrap();
        let got = dense_values(&c.weights["w"]);
        prop_assert_eq!(&got, &p);
        prop_assert_eq!(got.iter().filter(|&&x| x == 0.0).count(), rows * groups * (m - n));
    }

    #[test]
    fn head_ablation_zeroes_exactly_the_heads_columns(
        num_layers in 1usize..=3,
        num_heads in 1usize..=6,
        head_dim in 1usize..=5,
        hidden in 1usize..=9,
        picks in prop::collection::vec((0usize..3, 0usize..6), 1..=6),
    ) {
        let heads: Vec<HeadRef> = picks.iter()
            .map(|&(l, h)| HeadRef { layer: l % num_layers, head: h % num_heads })
            .collect();
        let layout = HeadLayout { num_layers, num_heads, num_kv_heads: 1, head_dim };
        let cols = num_heads * head_dim;
        let mut weights = WeightMap::new();
        let mut originals = Vec::new();
        for l in 0..num_layers {
            let v: Vec<f32> = (0..hidden * cols).map(|i| (i as f32 + 1.0) * if (i + l) % 3 == 0 { -0.25 } else { 0.5 }).collect();
            weights.insert(format!("model.layers.{l}.self_attn.o_proj.weight"),
                Tensor::from_vec(v.clone(), (hidden, cols), &Device::Cpu).unwrap());
            weights.insert(format!("model.layers.{l}.self_attn.q_proj.weight"),
                Tensor::from_vec(v.clone(), (hidden, cols), &Device::Cpu).unwrap());
            originals.push(v);
        }
        let c = HeadAblation::new(heads.clone()).compress(&weights, &|_| true, &layout).unwrap();
        let layers: BTreeSet<usize> = heads.iter().map(|h| h.layer).collect();
        prop_assert_eq!(c.weights.len(), layers.len());
        for &l in &layers {
            let ablated: BTreeSet<usize> = heads.iter().filter(|h| h.layer == l).map(|h| h.head).collect();
            let got = dense_values(&c.weights[&format!("model.layers.{l}.self_attn.o_proj.weight")]);
            let mut zero_cols = 0;
            for col in 0..cols {
                let gone = ablated.contains(&(col / head_dim));
                zero_cols += usize::from(gone);
                for r in 0..hidden {
                    let (x, w) = (got[r * cols + col], originals[l][r * cols + col]);
                    if gone {
                        prop_assert_eq!(x, 0.0);
                    } else {
                        prop_assert_eq!(x.to_bits(), w.to_bits());
                    }
                }
            }
            prop_assert_eq!(zero_cols, ablated.len() * head_dim);
        }
    }
}
