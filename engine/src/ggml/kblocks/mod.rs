//! The k-quants: super-blocks of 256 with 16 or 8 sub-block scales. Q2_K, Q3_K, Q4_K, Q5_K
//! and Q6_K as llama.cpp writes them (ggml's `quantize_row_q*_K_ref` without an importance
//! matrix, `quantize_row_q*_K_impl` with one) and their dequantization; Q8_K (the
//! activations' type) is dequantized only. Block layouts and algorithms as described in
//! ggml's `ggml-common.h` and `ggml-quants.c`; written here afresh.

use super::kquants::{
    make_q3_quants, make_qkx2_quants, make_qkx3_quants, make_qp_quants, make_qx_quants,
    nearest_int, GROUP_MAX_EPS,
};
use super::{f16_bits, f16_round};

mod dequant;

pub use dequant::{
    dequantize_q2_k, dequantize_q3_k, dequantize_q4_k, dequantize_q5_k, dequantize_q6_k,
    dequantize_q8_k,
};

/// Elements per super-block.
pub const QK_K: usize = 256;

/// Packs 2-bit levels of 256 values the way Q2_K and Q3_K store them.
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for k in 0..32 {
            qs[j / 4 + k] =
                l[j + k] | (l[j + k + 32] << 2) | (l[j + k + 64] << 4) | (l[j + k + 96] << 6);
        }
    }
}

/// Sub-block scale and minimum `j` of Q4_K / Q5_K's 12 packed scale bytes.
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn pack_scales_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        let (a, m) = (ls[j], lm[j]);
        if j < 4 {
            s[j] = a;
            s[j + 4] = m;
        } else {
            s[j + 4] = (a & 0xf) | ((m & 0xf) << 4);
            s[j - 4] |= (a >> 4) << 6;
            s[j] |= (m >> 4) << 6;
        }
    }
    s
}

fn sum_sq(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// Q2_K: one row (a multiple of 256 values), with or without importance weights.
pub fn quantize_q2_k(x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    for (i, xb) in x.chunks_exact(QK_K).enumerate() {
        let mut scales = [0.0f32; 16];
        let mut mins = [0.0f32; 16];
        let mut blk = [0u8; 84];
        let (d, dmin);
        if let Some(qw) = qw {
            let sigma2 = sum_sq(xb) / QK_K as f32;
            let mut sw = [0.0f32; 16];
            for j in 0..16 {
                let q = &qw[QK_K * i + 16 * j..];
                let mut weight = [0.0f32; 16];
                for k in 0..16 {
                    weight[k] = q[k] * (sigma2 + xb[16 * j + k] * xb[16 * j + k]).sqrt();
                }
                for w in weight {
                    sw[j] += w;
                }
                (scales[j], mins[j]) = make_qkx3_quants(
                    16,
                    3,
                    &xb[16 * j..],
                    Some(&weight),
                    &mut l[16 * j..],
                    &mut laux,
                    -0.9,
                    0.05,
                    36,
                    false,
                );
            }
            let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
            let dm = make_qp_quants(16, 15, &scales, &mut ls, &sw);
            let mm = make_qp_quants(16, 15, &mins, &mut lm, &sw);
            for j in 0..16 {
                blk[j] = ls[j] | (lm[j] << 4);
            }
            d = f16_round(dm);
            dmin = f16_round(mm);
        } else {
            let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
            for j in 0..16 {
                let mut weight = [0.0f32; 16];
                for k in 0..16 {
                    weight[k] = xb[16 * j + k].abs();
                }
                (scales[j], mins[j]) = make_qkx2_quants(
                    16,
                    3,
                    &xb[16 * j..],
                    &weight,
                    &mut l[16 * j..],
                    &mut laux,
                    -0.5,
                    0.1,
                    15,
                    true,
                );
                max_scale = max_scale.max_c(scales[j]);
                max_min = max_min.max_c(mins[j]);
            }
            if max_scale > 0.0 {
                let iscale = 15.0 / max_scale;
                for j in 0..16 {
                    blk[j] = nearest_int(iscale * scales[j]) as u8;
                }
                d = f16_round(max_scale / 15.0);
            } else {
                d = f16_round(0.0);
            }
            if max_min > 0.0 {
                let iscale = 15.0 / max_min;
                for j in 0..16 {
                    blk[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
                }
                dmin = f16_round(max_min / 15.0);
            } else {
                dmin = f16_round(0.0);
            }
        }
        for j in 0..16 {
            let dd = d * (blk[j] & 0xf) as f32;
            if dd == 0.0 {
                continue;
            }
            let m = dmin * (blk[j] >> 4) as f32;
            for k in 0..16 {
                l[16 * j + k] = nearest_int((xb[16 * j + k] + m) / dd).clamp(0, 3) as u8;
            }
        }
        pack_2bit(&l, &mut blk[16..80]);
        blk[80..82].copy_from_slice(&f16_bits(d).to_le_bytes());
        blk[82..84].copy_from_slice(&f16_bits(dmin).to_le_bytes());
        out.extend_from_slice(&blk);
    }
}

/// C's `if (x > m) m = x` for the running maxima of the k-quants.
trait MaxC {
    fn max_c(self, x: f32) -> f32;
}

impl MaxC for f32 {
    fn max_c(self, x: f32) -> f32 {
        if x > self {
            x
        } else {
            self
        }
    }
}

fn pack_q3_scales(ls: &[i32; 16]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for (j, &l) in ls.iter().enumerate() {
        if j < 8 {
            s[j] = (l & 0xf) as u8;
        } else {
            s[j - 8] |= ((l & 0xf) << 4) as u8;
        }
        s[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
    }
    s
}

pub(super) fn q3_scale(s: &[u8], j: usize) -> i32 {
    let lo = if j < 8 { s[j] & 0xf } else { s[j - 8] >> 4 };
    let hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    ((lo | (hi << 4)) as i8 as i32) - 32
}

/// Q3_K: one row, with or without importance weights.
pub fn quantize_q3_k(x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    let mut l = [0i8; QK_K];
    for (i, xb) in x.chunks_exact(QK_K).enumerate() {
        let mut scales = [0.0f32; 16];
        let mut packed = [0i32; 16];
        let d;
        if let Some(qw) = qw {
            let sigma2 = 2.0 * sum_sq(xb) / QK_K as f32;
            let mut sw = [0.0f32; 16];
            for j in 0..16 {
                let q = &qw[QK_K * i + 16 * j..];
                let mut weight = [0.0f32; 16];
                for k in 0..16 {
                    weight[k] = q[k] * (sigma2 + xb[16 * j + k] * xb[16 * j + k]).sqrt();
                }
                let mut sumw = 0.0f32;
                for w in weight {
                    sumw += w;
                }
                sw[j] = sumw;
                scales[j] =
                    make_qx_quants(16, 4, &xb[16 * j..], &mut l[16 * j..], 1, Some(&weight));
            }
            let mut ls = [0i8; 16];
            let d_block = make_qx_quants(16, 32, &scales, &mut ls, 1, Some(&sw));
            for j in 0..16 {
                packed[j] = ls[j] as i32;
            }
            d = d_block;
        } else {
            let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
            for j in 0..16 {
                scales[j] = make_q3_quants(16, 4, &xb[16 * j..], &mut l[16 * j..], true);
                let scale = scales[j].abs();
                if scale > amax {
                    amax = scale;
                    max_scale = scales[j];
                }
            }
            if max_scale != 0.0 {
                let iscale = -32.0 / max_scale;
                for j in 0..16 {
                    let v = nearest_int(iscale * scales[j]) as i8 as i32;
                    packed[j] = v.clamp(-32, 31) + 32;
                }
                d = 1.0 / iscale;
            } else {
                d = 0.0;
            }
        }
        let scale_bytes = pack_q3_scales(&packed);
        let dh = f16_bits(d);
        let dq = super::f16_from_bits(dh);
        for j in 0..16 {
            let dd = dq * q3_scale(&scale_bytes, j) as f32;
            if dd == 0.0 {
                continue;
            }
            for k in 0..16 {
                l[16 * j + k] = (nearest_int(xb[16 * j + k] / dd).clamp(-4, 3) + 4) as i8;
            }
        }
        let mut blk = [0u8; 110];
        let (mut m, mut hm) = (0usize, 1u8);
        let mut lu = [0u8; QK_K];
        for j in 0..QK_K {
            let mut v = l[j] as u8;
            if v > 3 {
                blk[m] |= hm;
                v -= 4;
            }
            lu[j] = v;
            m += 1;
            if m == QK_K / 8 {
                m = 0;
                hm <<= 1;
            }
        }
        pack_2bit(&lu, &mut blk[32..96]);
        blk[96..108].copy_from_slice(&scale_bytes);
        blk[108..110].copy_from_slice(&dh.to_le_bytes());
        out.extend_from_slice(&blk);
    }
}

/// Scales, minimums and first-pass levels of a Q4_K / Q5_K super-block.
struct K4Pass {
    ls: [u8; 8],
    lm: [u8; 8],
    d: f32,
    dmin: f32,
}

fn k4_pass(xb: &[f32], qw: Option<&[f32]>, nmax: i32, l: &mut [u8; QK_K]) -> K4Pass {
    let mut laux = [0u8; 32];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    if let Some(qw) = qw {
        let sigma2 = 2.0 * sum_sq(xb) / QK_K as f32;
        let mut sw = [0.0f32; 8];
        for j in 0..8 {
            let q = &qw[32 * j..];
            let mut weights = [0.0f32; 32];
            for k in 0..32 {
                weights[k] = q[k] * (sigma2 + xb[32 * j + k] * xb[32 * j + k]).sqrt();
            }
            let mut sumw = 0.0f32;
            for w in weights {
                sumw += w;
            }
            sw[j] = sumw;
            (scales[j], mins[j]) = make_qkx3_quants(
                32,
                nmax,
                &xb[32 * j..],
                Some(&weights),
                &mut l[32 * j..],
                &mut laux,
                -0.9,
                0.05,
                36,
                false,
            );
        }
        let d = make_qp_quants(8, 63, &scales, &mut ls, &sw);
        let m = make_qp_quants(8, 63, &mins, &mut lm, &sw);
        for j in 0..8 {
            ls[j] = ls[j].min(63);
            lm[j] = lm[j].min(63);
        }
        return K4Pass { ls, lm, d, dmin: m };
    }
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    let (rmin, rdelta, nstep) = if nmax == 15 {
        (-1.0, 0.1, 20)
    } else {
        (-0.5, 0.1, 15)
    };
    for j in 0..8 {
        let xs = &xb[32 * j..32 * j + 32];
        let av_x = (sum_sq(xs) / 32.0).sqrt();
        let mut weights = [0.0f32; 32];
        for k in 0..32 {
            weights[k] = av_x + xs[k].abs();
        }
        (scales[j], mins[j]) = make_qkx2_quants(
            32,
            nmax,
            xs,
            &weights,
            &mut l[32 * j..],
            &mut laux,
            rmin,
            rdelta,
            nstep,
            false,
        );
        max_scale = max_scale.max_c(scales[j]);
        max_min = max_min.max_c(mins[j]);
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    for j in 0..8 {
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    K4Pass {
        ls,
        lm,
        d: max_scale / 63.0,
        dmin: max_min / 63.0,
    }
}

/// Requantizes a Q4_K / Q5_K super-block with its stored (f16) scales; returns the header.
fn k4_levels(xb: &[f32], p: &K4Pass, nmax: i32, l: &mut [u8; QK_K]) -> [u8; 16] {
    let scales = pack_scales_k4(&p.ls, &p.lm);
    let (dh, mh) = (f16_bits(p.d), f16_bits(p.dmin));
    let (d, dmin) = (super::f16_from_bits(dh), super::f16_from_bits(mh));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &scales);
        let dd = d * sc as f32;
        if dd == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for k in 0..32 {
            l[32 * j + k] = nearest_int((xb[32 * j + k] + dm) / dd).clamp(0, nmax) as u8;
        }
    }
    let mut head = [0u8; 16];
    head[0..2].copy_from_slice(&dh.to_le_bytes());
    head[2..4].copy_from_slice(&mh.to_le_bytes());
    head[4..16].copy_from_slice(&scales);
    head
}

/// Q4_K: one row, with or without importance weights.
pub fn quantize_q4_k(x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    for (i, xb) in x.chunks_exact(QK_K).enumerate() {
        let p = k4_pass(xb, qw.map(|q| &q[QK_K * i..]), 15, &mut l);
        out.extend_from_slice(&k4_levels(xb, &p, 15, &mut l));
        for j in (0..QK_K).step_by(64) {
            for k in 0..32 {
                out.push(l[j + k] | (l[j + k + 32] << 4));
            }
        }
    }
}

/// Q5_K: one row, with or without importance weights.
pub fn quantize_q5_k(x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    for (i, xb) in x.chunks_exact(QK_K).enumerate() {
        let p = k4_pass(xb, qw.map(|q| &q[QK_K * i..]), 31, &mut l);
        out.extend_from_slice(&k4_levels(xb, &p, 31, &mut l));
        let mut qh = [0u8; 32];
        let mut ql = [0u8; 128];
        let (mut m1, mut m2) = (1u8, 2u8);
        for (s, n) in (0..QK_K).step_by(64).enumerate() {
            for j in 0..32 {
                let mut l1 = l[n + j];
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                let mut l2 = l[n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[32 * s + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
        out.extend_from_slice(&qh);
        out.extend_from_slice(&ql);
    }
}

/// Q6_K: one row, with or without importance weights (used as the error weights directly).
pub fn quantize_q6_k(x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    let mut l = [0i8; QK_K];
    for (i, xb) in x.chunks_exact(QK_K).enumerate() {
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for ib in 0..16 {
            let q = qw.map(|q| &q[QK_K * i + 16 * ib..QK_K * i + 16 * ib + 16]);
            let scale = make_qx_quants(16, 32, &xb[16 * ib..], &mut l[16 * ib..], 1, q);
            scales[ib] = scale;
            let abs_scale = scale.abs();
            if abs_scale > max_abs_scale {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        let mut blk = [0u8; 210];
        if max_abs_scale < GROUP_MAX_EPS {
            out.extend_from_slice(&blk);
            continue;
        }
        let iscale = -128.0 / max_scale;
        let dh = f16_bits(1.0 / iscale);
        let d = super::f16_from_bits(dh);
        let mut sc = [0i8; 16];
        for ib in 0..16 {
            sc[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        }
        for j in 0..16 {
            let dd = d * sc[j] as f32;
            if dd == 0.0 {
                continue;
            }
            for k in 0..16 {
                l[16 * j + k] = (nearest_int(xb[16 * j + k] / dd).clamp(-32, 31) + 32) as i8;
            }
        }
        let (ql, rest) = blk.split_at_mut(128);
        let (qh, tail) = rest.split_at_mut(64);
        for (h, j) in (0..QK_K).step_by(128).enumerate() {
            for k in 0..32 {
                let lv = |o: usize| l[j + k + o] as u8;
                ql[64 * h + k] = (lv(0) & 0xf) | ((lv(64) & 0xf) << 4);
                ql[64 * h + k + 32] = (lv(32) & 0xf) | ((lv(96) & 0xf) << 4);
                qh[32 * h + k] = (lv(0) >> 4)
                    | ((lv(32) >> 4) << 2)
                    | ((lv(64) >> 4) << 4)
                    | ((lv(96) >> 4) << 6);
            }
        }
        for (t, s) in tail[..16].iter_mut().zip(sc) {
            *t = s as u8;
        }
        tail[16..18].copy_from_slice(&dh.to_le_bytes());
        out.extend_from_slice(&blk);
    }
}

/// Q8_K (`d` f32, 256 signed bytes, 16 i16 sums): one row (ggml's `quantize_row_q8_K_ref`).
pub fn quantize_q8_k(x: &[f32], out: &mut Vec<u8>) {
    for xb in x.chunks_exact(QK_K) {
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            out.extend_from_slice(&[0u8; 292]);
            continue;
        }
        let iscale = -127.0 / max;
        let qs: Vec<i8> = xb
            .iter()
            .map(|&v| nearest_int(iscale * v).min(127) as i8)
            .collect();
        out.extend_from_slice(&(1.0 / iscale).to_le_bytes());
        out.extend(qs.iter().map(|&q| q as u8));
        for j in 0..16 {
            let s: i32 = qs[16 * j..16 * j + 16].iter().map(|&q| i32::from(q)).sum();
            out.extend_from_slice(&(s as i16).to_le_bytes());
        }
    }
}
