//! IQ4_NL (blocks of 32, one f16 scale) and IQ4_XS (super-blocks of 256 with 6-bit sub-block
//! scales): 4-bit indices into 16 non-linear levels. ggml's `quantize_row_iq4_nl_impl`
//! (as described in `ggml-quants.c`), written here afresh.

use super::tables::KVALUES_IQ4NL as VALUES;
use crate::ggml::kblocks::QK_K;
use crate::ggml::kquants::{nearest_int, GROUP_MAX_EPS};
use crate::ggml::{f16_bits, f16_val};

/// Index of the level nearest `x` (ties to the lower level), ggml's `best_index_int8`.
pub(crate) fn best_index(values: &[i8], x: f32) -> u8 {
    let n = values.len();
    if x <= values[0] as f32 {
        return 0;
    }
    if x >= values[n - 1] as f32 {
        return (n - 1) as u8;
    }
    let (mut ml, mut mu) = (0usize, n - 1);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < values[mav] as f32 {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - (values[mu - 1] as f32) < (values[mu] as f32) - x {
        (mu - 1) as u8
    } else {
        mu as u8
    }
}

/// One super-block: `(f16 d, scales_h, scales_l, 4-bit indices)`.
struct Iq4Out {
    dh: u16,
    scales_h: u16,
    scales_l: [u8; 4],
    q4: [u8; QK_K / 2],
}

/// ggml's `quantize_row_iq4_nl_impl` for one super-block of `x.len()` values in sub-blocks of
/// 32. `l` carries the indices between calls as there (a zero sub-block keeps old ones).
fn iq4_impl(x: &[f32], qw: Option<&[f32]>, ntry: i32, l: &mut [u8; QK_K]) -> Iq4Out {
    const BS: usize = 32;
    let sbs = x.len();
    let nb = sbs / BS;
    let mut sigma2 = 0.0f32;
    for &v in x {
        sigma2 += v * v;
    }
    sigma2 *= 2.0 / sbs as f32;
    let mut scales = [0.0f32; QK_K / 32];
    let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
    let v0 = VALUES[0] as f32;
    for ib in 0..nb {
        let xb = &x[ib * BS..ib * BS + BS];
        let mut weight = [0.0f32; BS];
        match qw {
            Some(q) => {
                for j in 0..BS {
                    weight[j] = q[ib * BS + j] * (sigma2 + xb[j] * xb[j]).sqrt();
                }
            }
            None => {
                for j in 0..BS {
                    weight[j] = xb[j] * xb[j];
                }
            }
        }
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax < GROUP_MAX_EPS {
            scales[ib] = 0.0;
            continue;
        }
        let mut d = if ntry > 0 { -max / v0 } else { max / v0 };
        let mut id = 1.0 / d;
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for j in 0..BS {
            let li = best_index(&VALUES, id * xb[j]);
            l[ib * BS + j] = li;
            let q = VALUES[li as usize] as f32;
            let w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        let mut best = d * sumqx;
        for itry in -ntry..=ntry {
            id = (itry + VALUES[0] as i32) as f32 / max;
            sumqx = 0.0;
            sumq2 = 0.0;
            for j in 0..BS {
                let q = VALUES[best_index(&VALUES, id * xb[j]) as usize] as f32;
                let w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }
    let mut out = Iq4Out {
        dh: 0,
        scales_h: 0,
        scales_l: [0; 4],
        q4: [0; QK_K / 2],
    };
    if nb > 1 {
        let d = -max_scale / 32.0;
        out.dh = f16_bits(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for ib in 0..nb {
            let ls = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * ls as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for j in 0..BS {
                l[ib * BS + j] = best_index(&VALUES, idl * x[ib * BS + j]);
            }
            let ls = (ls + 32) as u8;
            let (lo, hi) = (ls & 0xf, ls >> 4);
            if ib % 2 == 0 {
                out.scales_l[ib / 2] = lo;
            } else {
                out.scales_l[ib / 2] |= lo << 4;
            }
            out.scales_h |= u16::from(hi) << (2 * (ib % 8));
        }
    } else {
        out.dh = f16_bits(scales[0]);
        if ntry > 0 {
            let id = if scales[0] != 0.0 {
                1.0 / scales[0]
            } else {
                0.0
            };
            for j in 0..sbs {
                l[j] = best_index(&VALUES, id * x[j]);
            }
        }
    }
    for i in 0..sbs / 32 {
        for j in 0..16 {
            out.q4[16 * i + j] = l[32 * i + j] | (l[32 * i + 16 + j] << 4);
        }
    }
    out
}

/// IQ4_NL (`d` f16, 16 bytes of indices per 32 values): one row.
pub fn quantize_iq4_nl(x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    for (ib, xb) in x.chunks_exact(32).enumerate() {
        let q = qw.map(|q| &q[32 * ib..32 * ib + 32]);
        let r = iq4_impl(xb, q, 7, &mut l);
        out.extend_from_slice(&r.dh.to_le_bytes());
        out.extend_from_slice(&r.q4[..16]);
    }
}

/// IQ4_XS (`d` f16, `scales_h` u16, 4 bytes `scales_l`, 128 bytes of indices): one row.
pub fn quantize_iq4_xs(x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    for (ib, xb) in x.chunks_exact(QK_K).enumerate() {
        let q = qw.map(|q| &q[QK_K * ib..QK_K * ib + QK_K]);
        let r = iq4_impl(xb, q, 7, &mut l);
        out.extend_from_slice(&r.dh.to_le_bytes());
        out.extend_from_slice(&r.scales_h.to_le_bytes());
        out.extend_from_slice(&r.scales_l);
        out.extend_from_slice(&r.q4);
    }
}

/// Dequantizes whole IQ4_NL blocks into `y`.
pub fn dequantize_iq4_nl(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(18).zip(y.chunks_exact_mut(32)) {
        let d = f16_val(blk, 0);
        for j in 0..16 {
            yb[j] = d * VALUES[(blk[2 + j] & 0xf) as usize] as f32;
            yb[j + 16] = d * VALUES[(blk[2 + j] >> 4) as usize] as f32;
        }
    }
}

/// Dequantizes whole IQ4_XS blocks into `y`.
pub fn dequantize_iq4_xs(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(136).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_val(blk, 0);
        let scales_h = u16::from_le_bytes([blk[2], blk[3]]);
        for ib in 0..8 {
            let ls = ((blk[4 + ib / 2] >> (4 * (ib % 2))) & 0xf) as i32
                | ((((scales_h >> (2 * ib)) & 3) as i32) << 4);
            let dl = d * (ls - 32) as f32;
            let qs = &blk[8 + 16 * ib..];
            for j in 0..16 {
                yb[32 * ib + j] = dl * VALUES[(qs[j] & 0xf) as usize] as f32;
                yb[32 * ib + j + 16] = dl * VALUES[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
}
