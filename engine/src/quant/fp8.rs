//! FP8 E4M3 (`float8_e4m3fn`): 1 sign bit, 4 exponent bits (bias 7), 3 mantissa bits, no
//! infinities, NaN at `S.1111.111`, largest finite value 448, smallest subnormal 2^-9.
//!
//! Encoding rounds to nearest, ties to even (as torch's `to(torch.float8_e4m3fn)`) and
//! saturates: a finite value beyond ±448 becomes ±448, so a value clamped to the range first
//! (as compressed-tensors does before casting) encodes exactly as torch encodes it.

/// The largest finite E4M3 value.
pub const E4M3_MAX: f32 = 448.0;

/// The value of an E4M3 byte (NaN for `0x7f` and `0xff`).
pub fn decode_e4m3(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0f32 } else { 1.0 };
    let exp = i32::from((b >> 3) & 0x0f);
    let man = f32::from(b & 0x07);
    if exp == 15 && b & 0x07 == 7 {
        return f32::NAN;
    }
    let mag = if exp == 0 {
        man * (2.0f32).powi(-9)
    } else {
        (8.0 + man) * (2.0f32).powi(exp - 10)
    };
    sign * mag
}

/// The E4M3 byte nearest to `x` (ties to even), saturating at ±448; NaN encodes as `0x7f`.
pub fn encode_e4m3(x: f32) -> u8 {
    if x.is_nan() {
        return 0x7f;
    }
    let sign: u8 = if x.is_sign_negative() { 0x80 } else { 0 };
    let a = x.abs();
    if a >= E4M3_MAX {
        return sign | 0x7e;
    }
    // Subnormal range (and the rounding up into the smallest normal, code 8): steps of 2^-9.
    if a < (2.0f32).powi(-6) {
        let q = (a * 512.0).round_ties_even() as u8;
        return sign | q;
    }
    // Normal: a = m * 2^(e-3) with m in [8, 16); scaling by a power of two is exact.
    let mut e = ((a.to_bits() >> 23) & 0xff) as i32 - 127;
    let mut m = (a * (2.0f32).powi(3 - e)).round_ties_even() as u32;
    if m == 16 {
        e += 1;
        m = 8;
    }
    // a < 448 keeps (e, m) at or below (8, 14), the largest finite code.
    sign | (((e + 7) as u8) << 3) | (m - 8) as u8
}

/// `x` rounded to the nearest E4M3 value (saturating), as an f32.
pub fn round_e4m3(x: f32) -> f32 {
    decode_e4m3(encode_e4m3(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finite_code_round_trips() {
        for b in 0..=255u8 {
            let v = decode_e4m3(b);
            if v.is_nan() {
                assert!(b & 0x7f == 0x7f);
                continue;
            }
            assert_eq!(encode_e4m3(v), b, "code {b:#04x} value {v}");
        }
        assert_eq!(decode_e4m3(0x7e), 448.0);
        assert_eq!(decode_e4m3(0x01), (2.0f32).powi(-9));
    }

    #[test]
    fn rounds_to_nearest_even_and_saturates() {
        // Between 1.0 (0x38) and 1.125 (0x39): the midpoint goes to the even mantissa.
        assert_eq!(encode_e4m3(1.0625), 0x38);
        assert_eq!(encode_e4m3(1.0626), 0x39);
        // Between 1.125 and 1.25: the midpoint goes up to the even 1.25 (0x3a).
        assert_eq!(encode_e4m3(1.1875), 0x3a);
        assert_eq!(encode_e4m3(1000.0), 0x7e);
        assert_eq!(encode_e4m3(-1000.0), 0xfe);
        assert_eq!(encode_e4m3(f32::INFINITY), 0x7e);
        // Half the smallest subnormal rounds to zero (even), a bit more rounds up.
        assert_eq!(encode_e4m3((2.0f32).powi(-10)), 0x00);
        assert_eq!(encode_e4m3((2.0f32).powi(-10) * 1.01), 0x01);
        // The top of the subnormal range rounds into the smallest normal.
        assert_eq!(encode_e4m3(0.0154), 0x08);
    }
}
