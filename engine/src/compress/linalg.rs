//! Dense linear algebra of the second-order compressors (GPTQ, SparseGPT): the upper
//! Cholesky factor of an inverse Hessian, in f64, blocked so that the bulk of the work runs
//! as matrix products (candle's CPU GEMM).

use candle_core::{Device, Tensor};

use crate::error::Result;

/// Block size of the blocked factorisations.
const NB: usize = 128;

/// The upper-triangular `U` with `Uᵀ U = H⁻¹` for a symmetric positive-definite `h` (`n x n`,
/// row-major): GPTQ's `Hinv`, which torch computes as `cholesky(cholesky_inverse(cholesky(H)),
/// upper=True)`. Computed with one factorisation and one triangular inverse instead: with `P`
/// the reversal permutation, `P H P = L Lᵀ` gives `H⁻¹ = (P L⁻¹ P)ᵀ (P L⁻¹ P)`, and `P L⁻¹ P`
/// is upper triangular with a positive diagonal, hence the unique factor. `None` when `h` is
/// not (numerically) positive definite.
pub fn inverse_cholesky_upper(h: &[f64], n: usize) -> Result<Option<Vec<f64>>> {
    assert_eq!(h.len(), n * n, "inverse_cholesky_upper: not n x n");
    let mut a = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
        }
    }
    if !cholesky_lower(&mut a, n)? {
        return Ok(None);
    }
    invert_lower(&mut a, n)?;
    let mut u = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            u[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)];
        }
    }
    Ok(Some(u))
}

/// Overwrites the lower triangle of the symmetric `a` (`n x n`, row-major) with its Cholesky
/// factor `L` (`a = L Lᵀ`) and zeroes the upper triangle. False when a pivot is not positive.
pub fn cholesky_lower(a: &mut [f64], n: usize) -> Result<bool> {
    let mut k0 = 0;
    while k0 < n {
        let k1 = (k0 + NB).min(n);
        let m = k1 - k0;
        // The diagonal block, unblocked.
        let mut d = block(a, n, k0, k1, k0, k1);
        if !cholesky_small(&mut d, m) {
            return Ok(false);
        }
        put_block(a, n, k0, k0, m, &d);
        if k1 < n {
            let rest = n - k1;
            // Panel: L21 = A21 L11⁻ᵀ.
            let mut inv = d.clone();
            invert_lower_small(&mut inv, m);
            let a21 = tensor(&block(a, n, k1, n, k0, k1), rest, m)?;
            let inv_t = tensor(&inv, m, m)?.t()?;
            let l21 = a21.matmul(&inv_t)?;
            let l21v = l21.flatten_all()?.to_vec1::<f64>()?;
            put_block(a, n, k1, k0, m, &l21v);
            // Trailing update: A22 -= L21 L21ᵀ (the lower triangle is what later steps read).
            let upd = l21.matmul(&l21.t()?)?.flatten_all()?.to_vec1::<f64>()?;
            for i in 0..rest {
                let row = &mut a[(k1 + i) * n + k1..(k1 + i) * n + k1 + i + 1];
                for (x, u) in row.iter_mut().zip(&upd[i * rest..i * rest + i + 1]) {
                    *x -= u;
                }
            }
        }
        k0 = k1;
    }
    for i in 0..n {
        a[i * n + i + 1..(i + 1) * n].fill(0.0);
    }
    Ok(true)
}

/// Overwrites the lower-triangular `l` (`n x n`, row-major, non-zero diagonal) with its
/// inverse, block row by block row: `X_i = L_ii⁻¹ (E_i - L_i,<i X_<i)`.
pub fn invert_lower(l: &mut [f64], n: usize) -> Result<()> {
    let mut i0 = 0;
    while i0 < n {
        let i1 = (i0 + NB).min(n);
        let m = i1 - i0;
        let mut d = block(l, n, i0, i1, i0, i1);
        invert_lower_small(&mut d, m);
        if i0 > 0 {
            // X[i, :i0] = -D⁻¹ (L[i, :i0] X[:i0, :i0]); X[:i0, :i0] is already inverted.
            let li = tensor(&block(l, n, i0, i1, 0, i0), m, i0)?;
            let x = tensor(&block(l, n, 0, i0, 0, i0), i0, i0)?;
            let prod = tensor(&d, m, m)?.matmul(&li.matmul(&x)?)?;
            let v = prod.flatten_all()?.to_vec1::<f64>()?;
            let neg: Vec<f64> = v.iter().map(|x| -x).collect();
            put_block(l, n, i0, 0, i0, &neg);
        }
        put_block(l, n, i0, i0, m, &d);
        i0 = i1;
    }
    Ok(())
}

/// Unblocked Cholesky of a small symmetric block in place (lower triangle; upper zeroed).
fn cholesky_small(a: &mut [f64], m: usize) -> bool {
    for j in 0..m {
        let mut s = a[j * m + j];
        for k in 0..j {
            s -= a[j * m + k] * a[j * m + k];
        }
        if s.is_nan() || s <= 0.0 || !s.is_finite() {
            return false;
        }
        let d = s.sqrt();
        a[j * m + j] = d;
        for i in j + 1..m {
            let mut s = a[i * m + j];
            for k in 0..j {
                s -= a[i * m + k] * a[j * m + k];
            }
            a[i * m + j] = s / d;
        }
    }
    for i in 0..m {
        a[i * m + i + 1..(i + 1) * m].fill(0.0);
    }
    true
}

/// Inverse of a small lower-triangular block in place (forward substitution per column).
fn invert_lower_small(l: &mut [f64], m: usize) {
    let src = l.to_vec();
    for j in 0..m {
        for i in 0..m {
            l[i * m + j] = 0.0;
        }
        l[j * m + j] = 1.0 / src[j * m + j];
        for i in j + 1..m {
            let mut s = 0.0;
            for k in j..i {
                s += src[i * m + k] * l[k * m + j];
            }
            l[i * m + j] = -s / src[i * m + i];
        }
    }
}

/// Rows `r0..r1`, columns `c0..c1` of the row-major `n x n` matrix `a`, copied.
fn block(a: &[f64], n: usize, r0: usize, r1: usize, c0: usize, c1: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity((r1 - r0) * (c1 - c0));
    for r in r0..r1 {
        out.extend_from_slice(&a[r * n + c0..r * n + c1]);
    }
    out
}

/// Writes `v` (rows of `w` values) into `a` starting at row `r0`, column `c0`.
fn put_block(a: &mut [f64], n: usize, r0: usize, c0: usize, w: usize, v: &[f64]) {
    for (i, row) in v.chunks_exact(w).enumerate() {
        a[(r0 + i) * n + c0..(r0 + i) * n + c0 + w].copy_from_slice(row);
    }
}

fn tensor(v: &[f64], rows: usize, cols: usize) -> Result<Tensor> {
    Ok(Tensor::from_slice(v, (rows, cols), &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(n: usize, seed: u64) -> Vec<f64> {
        // X Xᵀ / n + I with X pseudo-random.
        let mut s = seed;
        let mut x = vec![0f64; n * n];
        for v in x.iter_mut() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *v = ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5;
        }
        let mut h = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                let mut acc = 0.0;
                for k in 0..n {
                    acc += x[i * n + k] * x[j * n + k];
                }
                h[i * n + j] = acc / n as f64 + if i == j { 1.0 } else { 0.0 };
            }
        }
        h
    }

    fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        let mut c = vec![0f64; n * n];
        for i in 0..n {
            for k in 0..n {
                for j in 0..n {
                    c[i * n + j] += a[i * n + k] * b[k * n + j];
                }
            }
        }
        c
    }

    fn transpose(a: &[f64], n: usize) -> Vec<f64> {
        let mut t = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                t[j * n + i] = a[i * n + j];
            }
        }
        t
    }

    #[test]
    fn cholesky_and_inverse_across_block_boundaries() {
        for n in [1, 5, 127, 128, 129, 300] {
            let h = spd(n, n as u64);
            let mut l = h.clone();
            assert!(cholesky_lower(&mut l, n).unwrap());
            let llt = matmul(&l, &transpose(&l, n), n);
            let err = llt
                .iter()
                .zip(&h)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-10, "n={n} L Lᵀ error {err}");
            let mut inv = l.clone();
            invert_lower(&mut inv, n).unwrap();
            let eye = matmul(&l, &inv, n);
            for i in 0..n {
                for j in 0..n {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((eye[i * n + j] - want).abs() < 1e-10, "n={n} ({i},{j})");
                }
            }
            // Uᵀ U H = I.
            let u = inverse_cholesky_upper(&h, n).unwrap().unwrap();
            for i in 0..n {
                for j in 0..i {
                    assert_eq!(u[i * n + j], 0.0);
                }
                assert!(u[i * n + i] > 0.0);
            }
            let hinv = matmul(&transpose(&u, n), &u, n);
            let eye = matmul(&hinv, &h, n);
            for i in 0..n {
                for j in 0..n {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((eye[i * n + j] - want).abs() < 1e-9, "n={n} ({i},{j})");
                }
            }
        }
    }

    #[test]
    fn not_positive_definite_is_none() {
        let h = vec![1.0, 2.0, 2.0, 1.0];
        assert!(inverse_cholesky_upper(&h, 2).unwrap().is_none());
    }
}
