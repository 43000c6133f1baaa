//! The ternary types TQ1_0 (base-3 packed, 1.69 bits) and TQ2_0 (2 bits), whose values are
//! -1, 0, 1 times one f16 scale per 256. As described in ggml's `ggml-quants.c`
//! (`quantize_row_tq*_0_ref`); written here afresh.

use super::kblocks::QK_K;
use super::{f16_bits, f16_val};

fn amax_id(x: &[f32]) -> (f32, f32) {
    let mut amax = 0.0f32;
    for &v in x {
        amax = amax.max(v.abs());
    }
    (amax, if amax != 0.0 { 1.0 / amax } else { 0.0 })
}

/// C's `lroundf(x * id) + 1`: the trit 0, 1 or 2.
fn trit(v: f32, id: f32) -> u8 {
    ((v * id).round() as i32 + 1) as u8
}

/// 5 trits (or 4 shifted up) in a byte, scaled so that a multiply by 3 peels them off.
fn pack(q: u8) -> u8 {
    (u16::from(q) * 256).div_ceil(243) as u8
}

/// TQ1_0 (48 bytes of 5 trits, 4 bytes of 4 trits, `d` f16): one row.
pub fn quantize_tq1_0(x: &[f32], out: &mut Vec<u8>) {
    for xb in x.chunks_exact(QK_K) {
        let (d, id) = amax_id(xb);
        let mut at = 0;
        let mut qs = [0u8; 48];
        for m in 0..32 {
            let mut q = 0u8;
            for n in 0..5 {
                q = q.wrapping_mul(3).wrapping_add(trit(xb[m + n * 32], id));
            }
            qs[m] = pack(q);
        }
        at += 160;
        for m in 0..16 {
            let mut q = 0u8;
            for n in 0..5 {
                q = q
                    .wrapping_mul(3)
                    .wrapping_add(trit(xb[at + m + n * 16], id));
            }
            qs[32 + m] = pack(q);
        }
        at += 80;
        let mut qh = [0u8; 4];
        for (j, h) in qh.iter_mut().enumerate() {
            let mut q = 0u8;
            for m in 0..4 {
                q = q.wrapping_mul(3).wrapping_add(trit(xb[at + j + m * 4], id));
            }
            *h = pack(q.wrapping_mul(3));
        }
        out.extend_from_slice(&qs);
        out.extend_from_slice(&qh);
        out.extend_from_slice(&f16_bits(d).to_le_bytes());
    }
}

/// TQ2_0 (64 bytes of 2-bit trits, `d` f16): one row.
pub fn quantize_tq2_0(x: &[f32], out: &mut Vec<u8>) {
    for xb in x.chunks_exact(QK_K) {
        let (d, id) = amax_id(xb);
        for j in (0..64).step_by(32) {
            for m in 0..32 {
                let mut q = 0u8;
                for n in 0..4 {
                    q += (trit(xb[4 * j + m + n * 32], id) & 3) << (2 * n);
                }
                out.push(q);
            }
        }
        out.extend_from_slice(&f16_bits(d).to_le_bytes());
    }
}

fn untrit(q: u8, pow: u8) -> f32 {
    let q = q.wrapping_mul(pow);
    ((u16::from(q) * 3) >> 8) as f32 - 1.0
}

/// Dequantizes whole TQ1_0 blocks into `y`.
#[allow(clippy::needless_range_loop)] // the reference's index arithmetic
pub fn dequantize_tq1_0(b: &[u8], y: &mut [f32]) {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    for (blk, yb) in b.chunks_exact(54).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_val(blk, 52);
        let mut at = 0;
        for p in POW3 {
            for m in 0..32 {
                yb[at] = untrit(blk[m], p) * d;
                at += 1;
            }
        }
        for p in POW3 {
            for m in 0..16 {
                yb[at] = untrit(blk[32 + m], p) * d;
                at += 1;
            }
        }
        for &p in &POW3[..4] {
            for j in 0..4 {
                yb[at] = untrit(blk[48 + j], p) * d;
                at += 1;
            }
        }
    }
}

/// Dequantizes whole TQ2_0 blocks into `y`.
pub fn dequantize_tq2_0(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(66).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_val(blk, 64);
        let mut at = 0;
        for j in (0..64).step_by(32) {
            for l in 0..4 {
                for m in 0..32 {
                    yb[at] = (((blk[j + m] >> (2 * l)) & 3) as i32 - 1) as f32 * d;
                    at += 1;
                }
            }
        }
    }
}
