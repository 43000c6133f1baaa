//! Dequantization of the k-quant super-blocks, as ggml's `dequantize_row_q*_K`.

use super::{q3_scale, scale_min_k4, QK_K};
use crate::ggml::f16_val;

/// Dequantizes whole Q2_K blocks into `y`.
pub fn dequantize_q2_k(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(84).zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_val(blk, 80), f16_val(blk, 82));
        let mut at = 0;
        let mut is = 0;
        for n in 0..2 {
            let q = &blk[16 + 32 * n..];
            for shift in (0..8).step_by(2) {
                for half in 0..2 {
                    let sc = blk[is];
                    is += 1;
                    let (dl, ml) = (d * (sc & 0xf) as f32, min * (sc >> 4) as f32);
                    for k in 0..16 {
                        yb[at] = dl * ((q[k + 16 * half] >> shift) & 3) as f32 - ml;
                        at += 1;
                    }
                }
            }
        }
    }
}

/// Dequantizes whole Q3_K blocks into `y`.
pub fn dequantize_q3_k(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(110).zip(y.chunks_exact_mut(QK_K)) {
        let d_all = f16_val(blk, 108);
        let hm = &blk[0..32];
        let scales = &blk[96..108];
        let mut m = 1u8;
        let (mut at, mut is) = (0, 0);
        for n in 0..2 {
            let q = &blk[32 + 32 * n..];
            for shift in (0..8).step_by(2) {
                for half in 0..2 {
                    let dl = d_all * q3_scale(scales, is) as f32;
                    is += 1;
                    for k in 0..16 {
                        let lvl = ((q[k + 16 * half] >> shift) & 3) as i32
                            - if hm[k + 16 * half] & m != 0 { 0 } else { 4 };
                        yb[at] = dl * lvl as f32;
                        at += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

/// Dequantizes whole Q4_K blocks into `y`.
pub fn dequantize_q4_k(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(144).zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_val(blk, 0), f16_val(blk, 2));
        let scales = &blk[4..16];
        for s in 0..4 {
            let q = &blk[16 + 32 * s..16 + 32 * s + 32];
            let (sc1, m1) = scale_min_k4(2 * s, scales);
            let (sc2, m2) = scale_min_k4(2 * s + 1, scales);
            let (d1, mm1, d2, mm2) = (
                d * sc1 as f32,
                min * m1 as f32,
                d * sc2 as f32,
                min * m2 as f32,
            );
            for k in 0..32 {
                yb[64 * s + k] = d1 * (q[k] & 0xf) as f32 - mm1;
                yb[64 * s + 32 + k] = d2 * (q[k] >> 4) as f32 - mm2;
            }
        }
    }
}

/// Dequantizes whole Q5_K blocks into `y`.
pub fn dequantize_q5_k(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(176).zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_val(blk, 0), f16_val(blk, 2));
        let scales = &blk[4..16];
        let qh = &blk[16..48];
        let (mut u1, mut u2) = (1u8, 2u8);
        for s in 0..4 {
            let ql = &blk[48 + 32 * s..48 + 32 * s + 32];
            let (sc1, m1) = scale_min_k4(2 * s, scales);
            let (sc2, m2) = scale_min_k4(2 * s + 1, scales);
            let (d1, mm1, d2, mm2) = (
                d * sc1 as f32,
                min * m1 as f32,
                d * sc2 as f32,
                min * m2 as f32,
            );
            for k in 0..32 {
                let h1 = if qh[k] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[k] & u2 != 0 { 16 } else { 0 };
                yb[64 * s + k] = d1 * ((ql[k] & 0xf) as i32 + h1) as f32 - mm1;
                yb[64 * s + 32 + k] = d2 * ((ql[k] >> 4) as i32 + h2) as f32 - mm2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

/// Dequantizes whole Q6_K blocks into `y`.
pub fn dequantize_q6_k(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(210).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_val(blk, 208);
        for h in 0..2 {
            let ql = &blk[64 * h..];
            let qh = &blk[128 + 32 * h..];
            let sc = &blk[192 + 8 * h..];
            let yh = &mut yb[128 * h..];
            for k in 0..32 {
                let is = k / 16;
                let q1 = ((ql[k] & 0xf) | ((qh[k] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[k + 32] & 0xf) | (((qh[k] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[k] >> 4) | (((qh[k] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[k + 32] >> 4) | (((qh[k] >> 6) & 3) << 4)) as i32 - 32;
                let s = |o: usize| sc[is + o] as i8 as f32;
                yh[k] = d * s(0) * q1 as f32;
                yh[k + 32] = d * s(2) * q2 as f32;
                yh[k + 64] = d * s(4) * q3 as f32;
                yh[k + 96] = d * s(6) * q4 as f32;
            }
        }
    }
}

/// Dequantizes whole Q8_K blocks (`d` f32, 256 signed bytes, 16 i16 sums) into `y`.
pub fn dequantize_q8_k(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(292).zip(y.chunks_exact_mut(QK_K)) {
        let d = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
        for k in 0..QK_K {
            yb[k] = d * (blk[4 + k] as i8) as f32;
        }
    }
}
