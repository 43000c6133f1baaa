//! The i-quants: IQ4_NL and IQ4_XS (non-linear 4-bit levels), IQ3_S, IQ3_XXS, IQ2_S,
//! IQ2_XS, IQ2_XXS (points of a lattice grid with sign bits), IQ1_S and IQ1_M (ternary grid
//! points with a shift). Dequantization of every one, quantization of those implemented
//! (see [`can_quantize`]). Layouts and algorithms as described in ggml's `ggml-common.h` and
//! `ggml-quants.c`; written here afresh.

mod iq4;
pub mod tables;

use super::types::{GgmlType, QuantError};
use super::{f16_val, kblocks::QK_K};
use tables::*;

/// True for the i-quant types [`quantize_row`] writes.
pub fn can_quantize(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::IQ4NL | GgmlType::IQ4XS)
}

/// Quantizes one row to an i-quant type.
pub fn quantize_row(
    ty: GgmlType,
    x: &[f32],
    qw: Option<&[f32]>,
    out: &mut Vec<u8>,
) -> Result<(), QuantError> {
    match ty {
        GgmlType::IQ4NL => iq4::quantize_iq4_nl(x, qw, out),
        GgmlType::IQ4XS => iq4::quantize_iq4_xs(x, qw, out),
        other => {
            return Err(QuantError::Unsupported(format!(
                "quantizing to {} is not implemented",
                other.name()
            )))
        }
    }
    Ok(())
}

fn sign(signs: u8, j: usize) -> f32 {
    if signs & KMASK_IQ2XS[j] != 0 {
        -1.0
    } else {
        1.0
    }
}

fn grid8(g: u64, j: usize) -> f32 {
    ((g >> (8 * j)) & 0xff) as u8 as f32
}

fn grid4(g: u32, j: usize) -> f32 {
    ((g >> (8 * j)) & 0xff) as u8 as f32
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Dequantizes whole blocks of an i-quant type into `y`.
pub fn dequantize(ty: GgmlType, b: &[u8], y: &mut [f32]) -> Result<(), QuantError> {
    match ty {
        GgmlType::IQ4NL => iq4::dequantize_iq4_nl(b, y),
        GgmlType::IQ4XS => iq4::dequantize_iq4_xs(b, y),
        GgmlType::IQ2XXS => dequantize_iq2_xxs(b, y),
        GgmlType::IQ2XS => dequantize_iq2_xs(b, y),
        GgmlType::IQ2S => dequantize_iq2_s(b, y),
        GgmlType::IQ3XXS => dequantize_iq3_xxs(b, y),
        GgmlType::IQ3S => dequantize_iq3_s(b, y),
        GgmlType::IQ1S => dequantize_iq1_s(b, y),
        GgmlType::IQ1M => dequantize_iq1_m(b, y),
        other => {
            return Err(QuantError::Unsupported(format!(
                "dequantizing {} is not implemented",
                other.name()
            )))
        }
    }
    Ok(())
}

fn dequantize_iq2_xxs(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(66).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_val(blk, 0);
        let mut at = 0;
        for ib32 in 0..8 {
            let q = &blk[2 + 8 * ib32..];
            let aux1 = u32_at(q, 4);
            let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
            for l in 0..4 {
                let g = IQ2XXS_GRID[q[l] as usize];
                let signs = KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
                for j in 0..8 {
                    yb[at] = db * grid8(g, j) * sign(signs, j);
                    at += 1;
                }
            }
        }
    }
}

#[allow(clippy::needless_range_loop)] // the reference's index arithmetic
fn dequantize_iq2_xs(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(74).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_val(blk, 0);
        let scales = &blk[66..74];
        let mut at = 0;
        for ib32 in 0..8 {
            let db = [
                d * (0.5 + (scales[ib32] & 0xf) as f32) * 0.25,
                d * (0.5 + (scales[ib32] >> 4) as f32) * 0.25,
            ];
            for l in 0..4 {
                let q = u16_at(blk, 2 + 2 * (4 * ib32 + l));
                let g = IQ2XS_GRID[(q & 511) as usize];
                let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
                for j in 0..8 {
                    yb[at] = db[l / 2] * grid8(g, j) * sign(signs, j);
                    at += 1;
                }
            }
        }
    }
}

fn dequantize_iq2_s(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(82).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_val(blk, 0);
        let qs = &blk[2..34];
        let signs = &blk[34..66];
        let qh = &blk[66..74];
        let scales = &blk[74..82];
        let mut at = 0;
        for ib32 in 0..8 {
            let db = [
                d * (0.5 + (scales[ib32] & 0xf) as f32) * 0.25,
                d * (0.5 + (scales[ib32] >> 4) as f32) * 0.25,
            ];
            for l in 0..4 {
                let dl = db[l / 2];
                let idx =
                    qs[4 * ib32 + l] as usize | (((qh[ib32] as usize) << (8 - 2 * l)) & 0x300);
                let g = IQ2S_GRID[idx];
                let s = signs[4 * ib32 + l];
                for j in 0..8 {
                    yb[at] = dl * grid8(g, j) * sign(s, j);
                    at += 1;
                }
            }
        }
    }
}

fn dequantize_iq3_xxs(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(98).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_val(blk, 0);
        let qs = &blk[2..66];
        let ss = &blk[66..98];
        let mut at = 0;
        for ib32 in 0..8 {
            let aux = u32_at(ss, 4 * ib32);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
            for l in 0..4 {
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                let g1 = IQ3XXS_GRID[qs[8 * ib32 + 2 * l] as usize];
                let g2 = IQ3XXS_GRID[qs[8 * ib32 + 2 * l + 1] as usize];
                for j in 0..4 {
                    yb[at + j] = db * grid4(g1, j) * sign(signs, j);
                    yb[at + j + 4] = db * grid4(g2, j) * sign(signs, j + 4);
                }
                at += 8;
            }
        }
    }
}

fn dequantize_iq3_s(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(110).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_val(blk, 0);
        let qs = &blk[2..66];
        let qh = &blk[66..74];
        let signs = &blk[74..106];
        let scales = &blk[106..110];
        let mut at = 0;
        for ib32 in (0..8).step_by(2) {
            let dbs = [
                d * (1 + 2 * (scales[ib32 / 2] & 0xf) as i32) as f32,
                d * (1 + 2 * (scales[ib32 / 2] >> 4) as i32) as f32,
            ];
            for (half, db) in dbs.into_iter().enumerate() {
                let sub = ib32 + half;
                let h = qh[sub] as usize;
                for l in 0..4 {
                    let i1 = qs[8 * sub + 2 * l] as usize | ((h << (8 - 2 * l)) & 256);
                    let i2 = qs[8 * sub + 2 * l + 1] as usize | ((h << (7 - 2 * l)) & 256);
                    let (g1, g2) = (IQ3S_GRID[i1], IQ3S_GRID[i2]);
                    let s = signs[4 * sub + l];
                    for j in 0..4 {
                        yb[at + j] = db * grid4(g1, j) * sign(s, j);
                        yb[at + j + 4] = db * grid4(g2, j) * sign(s, j + 4);
                    }
                    at += 8;
                }
            }
        }
    }
}

/// The shift IQ1_S and IQ1_M add to every grid value (`IQ1S_DELTA`, `IQ1M_DELTA`).
pub const IQ1_DELTA: f32 = 0.125;

fn grid1(idx: usize, j: usize) -> f32 {
    ((IQ1S_GRID[idx] >> (8 * j)) & 0xff) as u8 as i8 as f32
}

fn dequantize_iq1_s(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(50).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_val(blk, 0);
        let qs = &blk[2..34];
        let mut at = 0;
        for ib in 0..8 {
            let qh = u16_at(blk, 34 + 2 * ib);
            let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
            let delta = if qh & 0x8000 != 0 {
                -IQ1_DELTA
            } else {
                IQ1_DELTA
            };
            for l in 0..4 {
                let idx = qs[4 * ib + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
                for j in 0..8 {
                    yb[at] = dl * (grid1(idx, j) + delta);
                    at += 1;
                }
            }
        }
    }
}

fn dequantize_iq1_m(b: &[u8], y: &mut [f32]) {
    for (blk, yb) in b.chunks_exact(56).zip(y.chunks_exact_mut(QK_K)) {
        let qs = &blk[0..32];
        let qh = &blk[32..48];
        let sc: [u16; 4] = std::array::from_fn(|k| u16_at(blk, 48 + 2 * k));
        let scale =
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
        let d = half::f16::from_bits(scale).to_f32();
        let mut at = 0;
        for ib in 0..8 {
            let s = sc[ib / 2];
            let dl1 = d * (2 * ((s >> (6 * (ib % 2))) & 7) + 1) as f32;
            let dl2 = d * (2 * ((s >> (6 * (ib % 2) + 3)) & 7) + 1) as f32;
            let (q, h) = (&qs[4 * ib..], &qh[2 * ib..]);
            let idx = [
                q[0] as usize | ((h[0] as usize) << 8 & 0x700),
                q[1] as usize | ((h[0] as usize) << 4 & 0x700),
                q[2] as usize | ((h[1] as usize) << 8 & 0x700),
                q[3] as usize | ((h[1] as usize) << 4 & 0x700),
            ];
            let delta = [
                if h[0] & 0x08 != 0 {
                    -IQ1_DELTA
                } else {
                    IQ1_DELTA
                },
                if h[0] & 0x80 != 0 {
                    -IQ1_DELTA
                } else {
                    IQ1_DELTA
                },
                if h[1] & 0x08 != 0 {
                    -IQ1_DELTA
                } else {
                    IQ1_DELTA
                },
                if h[1] & 0x80 != 0 {
                    -IQ1_DELTA
                } else {
                    IQ1_DELTA
                },
            ];
            for l in 0..4 {
                let dl = if l < 2 { dl1 } else { dl2 };
                for j in 0..8 {
                    yb[at] = dl * (grid1(idx[l], j) + delta[l]);
                    at += 1;
                }
            }
        }
    }
}
