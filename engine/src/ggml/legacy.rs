//! The 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (and IQ4_NL's layout cousin lives
//! in [`super::iquants`]). Quantizers follow ggml's `quantize_row_*_ref` (no importance
//! matrix) and `quantize_row_*_impl` (with one), operation for operation in f32, so the
//! blocks are byte-identical to `llama-quantize`'s. Algorithms as described in ggml's
//! `ggml/src/ggml-quants.c`; written here afresh.

use super::kquants::{make_qkx3_quants, make_qx_quants};
use super::{f16_bits, f16_val};

/// Elements per block.
pub const QK: usize = 32;

/// Largest magnitude in `x` and the signed value that has it (first one on ties).
fn signed_amax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// `sigma2` of the importance-weighted legacy quantizers: the mean square of the whole row.
fn row_sigma2(x: &[f32]) -> f32 {
    let mut sum_x2 = 0.0f32;
    for &v in x {
        sum_x2 += v * v;
    }
    sum_x2 / x.len() as f32
}

fn weights(xb: &[f32], qw: &[f32], sigma2: f32) -> [f32; QK] {
    let mut w = [0.0f32; QK];
    for j in 0..QK {
        w[j] = qw[j] * (sigma2 + xb[j] * xb[j]).sqrt();
    }
    w
}

/// C's `(int8_t)(f)` for the small non-negative values these quantizers produce.
fn trunc_i8(f: f32) -> i32 {
    (f as i32) as i8 as i32
}

/// Q4_0 (`d` f16, 16 bytes of nibbles): one row.
pub fn quantize_q4_0(x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    if let Some(qw) = qw {
        let sigma2 = row_sigma2(x);
        let mut l = [0i8; QK];
        for (xb, qb) in x.chunks_exact(QK).zip(qw.chunks_exact(QK)) {
            let w = weights(xb, qb, sigma2);
            let d = make_qx_quants(QK, 8, xb, &mut l, 1, Some(&w));
            out.extend_from_slice(&f16_bits(d).to_le_bytes());
            for j in 0..16 {
                out.push((l[j] as u8) | ((l[j + 16] as u8) << 4));
            }
        }
        return;
    }
    for xb in x.chunks_exact(QK) {
        let (_, max) = signed_amax(xb);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16_bits(d).to_le_bytes());
        for j in 0..16 {
            let x0 = xb[j] * id;
            let x1 = xb[j + 16] * id;
            let xi0 = trunc_i8(x0 + 8.5).min(15) as u8;
            let xi1 = trunc_i8(x1 + 8.5).min(15) as u8;
            out.push(xi0 | (xi1 << 4));
        }
    }
}

/// Q4_1 (`d`, `m` f16, 16 bytes of nibbles): one row.
pub fn quantize_q4_1(x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    if let Some(qw) = qw {
        let sigma2 = row_sigma2(x);
        let (mut l, mut laux) = ([0u8; QK], [0u8; QK]);
        for (xb, qb) in x.chunks_exact(QK).zip(qw.chunks_exact(QK)) {
            let w = weights(xb, qb, sigma2);
            let (d, min) = make_qkx3_quants(
                QK,
                15,
                xb,
                Some(&w),
                &mut l,
                &mut laux,
                -0.9,
                0.05,
                36,
                false,
            );
            out.extend_from_slice(&f16_bits(d).to_le_bytes());
            out.extend_from_slice(&f16_bits(-min).to_le_bytes());
            for j in 0..16 {
                out.push(l[j] | (l[j + 16] << 4));
            }
        }
        return;
    }
    for xb in x.chunks_exact(QK) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16_bits(d).to_le_bytes());
        out.extend_from_slice(&f16_bits(min).to_le_bytes());
        for j in 0..16 {
            let x0 = (xb[j] - min) * id;
            let x1 = (xb[j + 16] - min) * id;
            let xi0 = trunc_i8(x0 + 0.5).min(15) as u8;
            let xi1 = trunc_i8(x1 + 0.5).min(15) as u8;
            out.push(xi0 | (xi1 << 4));
        }
    }
}

#[allow(clippy::needless_range_loop)] // the reference's index arithmetic
fn push_q5(out: &mut Vec<u8>, l: impl Fn(usize) -> u8) {
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for j in 0..16 {
        let (xi0, xi1) = (l(j), l(j + 16));
        qs[j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
        qh |= (u32::from(xi0 & 0x10) >> 4) << j;
        qh |= (u32::from(xi1 & 0x10) >> 4) << (j + 16);
    }
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

/// Q5_0 (`d` f16, `qh` u32, 16 bytes of nibbles): one row.
pub fn quantize_q5_0(x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    if let Some(qw) = qw {
        let sigma2 = row_sigma2(x);
        let mut l = [0i8; QK];
        for (xb, qb) in x.chunks_exact(QK).zip(qw.chunks_exact(QK)) {
            let w = weights(xb, qb, sigma2);
            let d = make_qx_quants(QK, 16, xb, &mut l, 1, Some(&w));
            out.extend_from_slice(&f16_bits(d).to_le_bytes());
            push_q5(out, |j| l[j] as u8);
        }
        return;
    }
    for xb in x.chunks_exact(QK) {
        let (_, max) = signed_amax(xb);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16_bits(d).to_le_bytes());
        push_q5(out, |j| trunc_i8(xb[j] * id + 16.5).min(31) as u8);
    }
}

/// Q5_1 (`d`, `m` f16, `qh` u32, 16 bytes of nibbles): one row.
pub fn quantize_q5_1(x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    if let Some(qw) = qw {
        let sigma2 = row_sigma2(x);
        let (mut l, mut laux) = ([0u8; QK], [0u8; QK]);
        for (xb, qb) in x.chunks_exact(QK).zip(qw.chunks_exact(QK)) {
            let w = weights(xb, qb, sigma2);
            let (d, min) = make_qkx3_quants(
                QK,
                31,
                xb,
                Some(&w),
                &mut l,
                &mut laux,
                -0.9,
                0.05,
                36,
                false,
            );
            out.extend_from_slice(&f16_bits(d).to_le_bytes());
            out.extend_from_slice(&f16_bits(-min).to_le_bytes());
            push_q5(out, |j| l[j]);
        }
        return;
    }
    for xb in x.chunks_exact(QK) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16_bits(d).to_le_bytes());
        out.extend_from_slice(&f16_bits(min).to_le_bytes());
        push_q5(out, |j| ((xb[j] - min) * id + 0.5) as i32 as u8);
    }
}

/// Q8_0 (`d` f16, 32 signed bytes): one row; ggml ignores an importance matrix here.
pub fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    for xb in x.chunks_exact(QK) {
        let mut amax = 0.0f32;
        for &v in xb {
            amax = amax.max(v.abs());
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16_bits(d).to_le_bytes());
        for &v in xb {
            out.push((v * id).round() as i32 as i8 as u8);
        }
    }
}

/// Dequantizes whole Q4_0 blocks into `y`.
pub fn dequantize_q4_0(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(18).zip(y.chunks_exact_mut(QK)) {
        let d = f16_val(blk, 0);
        for j in 0..16 {
            yb[j] = ((blk[2 + j] & 0x0f) as i32 - 8) as f32 * d;
            yb[j + 16] = ((blk[2 + j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Dequantizes whole Q4_1 blocks into `y`.
pub fn dequantize_q4_1(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(20).zip(y.chunks_exact_mut(QK)) {
        let (d, m) = (f16_val(blk, 0), f16_val(blk, 2));
        for j in 0..16 {
            yb[j] = (blk[4 + j] & 0x0f) as f32 * d + m;
            yb[j + 16] = (blk[4 + j] >> 4) as f32 * d + m;
        }
    }
}

fn q5_values(qh: u32, qs: &[u8], j: usize) -> (i32, i32) {
    let xh0 = (((qh >> j) << 4) & 0x10) as u8;
    let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
    (((qs[j] & 0x0f) | xh0) as i32, ((qs[j] >> 4) | xh1) as i32)
}

/// Dequantizes whole Q5_0 blocks into `y`.
pub fn dequantize_q5_0(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(22).zip(y.chunks_exact_mut(QK)) {
        let d = f16_val(blk, 0);
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        for j in 0..16 {
            let (x0, x1) = q5_values(qh, &blk[6..], j);
            yb[j] = (x0 - 16) as f32 * d;
            yb[j + 16] = (x1 - 16) as f32 * d;
        }
    }
}

/// Dequantizes whole Q5_1 blocks into `y`.
pub fn dequantize_q5_1(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(24).zip(y.chunks_exact_mut(QK)) {
        let (d, m) = (f16_val(blk, 0), f16_val(blk, 2));
        let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
        for j in 0..16 {
            let (x0, x1) = q5_values(qh, &blk[8..], j);
            yb[j] = x0 as f32 * d + m;
            yb[j + 16] = x1 as f32 * d + m;
        }
    }
}

/// Dequantizes whole Q8_0 blocks into `y`.
pub fn dequantize_q8_0(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(34).zip(y.chunks_exact_mut(QK)) {
        let d = f16_val(blk, 0);
        for j in 0..QK {
            yb[j] = (blk[2 + j] as i8) as f32 * d;
        }
    }
}
