//! bitsandbytes' blockwise quantization: the 4-bit NF4 and FP4 code tables, 4-bit
//! quantization and dequantization (two codes per byte, the first in the high nibble, one
//! absmax per block), and the 8-bit blockwise "dynamic" quantization that double quantization
//! applies to the absmax values.
//!
//! Bit-exact with bitsandbytes 0.50 on CPU: 4-bit quantization as its default kernel
//! (`scaled = clamp(x * (1 / absmax), -1, 1)`, then the bucket of `scaled` among the
//! midpoints of the sorted table, a value on a midpoint going to the lower code), 8-bit
//! blockwise quantization as its C kernel (`x / absmax`, the code below or at the value, moved
//! up only when the code above is strictly nearer), dequantization `code[q] * absmax` in f32.

/// The NF4 table (`bitsandbytes.functional.get_4bit_type("nf4")`), by code.
pub const NF4: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// The FP4 table (`get_4bit_type("fp4")`: E2M1 with bias 2, divided by its maximum 12), by
/// code (bit 3 is the sign; code 8, "negative zero", is +0.0 in bitsandbytes' table).
pub const FP4: [f32; 16] = [
    0.0,
    0.0625 / 12.0,
    8.0 / 12.0,
    1.0, // 12 / 12
    4.0 / 12.0,
    6.0 / 12.0,
    2.0 / 12.0,
    3.0 / 12.0,
    0.0,
    -0.0625 / 12.0,
    -8.0 / 12.0,
    -12.0 / 12.0,
    -4.0 / 12.0,
    -6.0 / 12.0,
    -2.0 / 12.0,
    -3.0 / 12.0,
];

/// FP4 codes in ascending order of value, as torch's `argsort` orders the table on CPU
/// (the two zeros, equal, in table order).
const FP4_SORTED: [u8; 16] = [11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3];

/// A 4-bit code table of bitsandbytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FourBit {
    /// NormalFloat4.
    Nf4,
    /// bitsandbytes' FP4 (E2M1).
    Fp4,
}

impl FourBit {
    /// The table, by code.
    pub fn table(self) -> &'static [f32; 16] {
        match self {
            FourBit::Nf4 => &NF4,
            FourBit::Fp4 => &FP4,
        }
    }

    /// The name bitsandbytes uses (`nf4`, `fp4`).
    pub fn name(self) -> &'static str {
        match self {
            FourBit::Nf4 => "nf4",
            FourBit::Fp4 => "fp4",
        }
    }

    /// Codes in ascending order of their values.
    fn sorted_codes(self) -> [u8; 16] {
        match self {
            FourBit::Nf4 => std::array::from_fn(|i| i as u8),
            FourBit::Fp4 => FP4_SORTED,
        }
    }
}

/// The signed 8-bit dynamic map of `bitsandbytes.functional.create_dynamic_map()` (the
/// table double quantization uses for the absmax values), as f32 bit patterns in code order.
pub const DYNAMIC_MAP_BITS: [u32; 256] = [
    0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a, 0xbf650000,
    0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666, 0xbf4bcccd, 0xbf483333,
    0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6666,
    0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a,
    0xbf0b0000, 0xbf076666, 0xbf03cccc, 0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a,
    0xbedc6666, 0xbed53333, 0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000,
    0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
    0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334,
    0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c2a, 0xbda1999a,
    0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147b, 0xbd728f5d, 0xbd670a3d,
    0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148,
    0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148,
    0xbc1f3b64, 0xbc160418, 0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4,
    0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
    0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b,
    0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000,
    0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
    0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
    0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
    0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
    0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
    0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
    0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
    0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334,
    0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd,
    0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
    0x3eb13333, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a,
    0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
    0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd, 0x3f2b6666,
    0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333,
    0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000,
    0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
];

/// The dynamic map as f32 values.
pub fn dynamic_map() -> [f32; 256] {
    std::array::from_fn(|i| f32::from_bits(DYNAMIC_MAP_BITS[i]))
}

/// Block absmax values of `x` in blocks of `blocksize` (the last block may be shorter).
fn block_absmax(x: &[f32], blocksize: usize) -> Vec<f32> {
    x.chunks(blocksize)
        .map(|b| b.iter().fold(0.0f32, |m, v| m.max(v.abs())))
        .collect()
}

/// 4-bit blockwise quantization of `x` (flattened row-major) as bitsandbytes'
/// `quantize_4bit` on CPU: `(packed, absmax)` with two codes per byte, the first element in
/// the high nibble, a zero nibble padding an odd count.
pub fn quantize_4bit(x: &[f32], blocksize: usize, table: FourBit) -> (Vec<u8>, Vec<f32>) {
    let blocksize = blocksize.max(1);
    let absmax = block_absmax(x, blocksize);
    let codes = table.table();
    let order = table.sorted_codes();
    let bounds: [f32; 15] =
        std::array::from_fn(|i| (codes[order[i] as usize] + codes[order[i + 1] as usize]) / 2.0);
    let mut q = Vec::with_capacity(x.len() + 1);
    for (b, block) in x.chunks(blocksize).enumerate() {
        let inv = 1.0f32 / absmax[b].max(1e-38);
        for &v in block {
            let s = (v * inv).clamp(-1.0, 1.0);
            // torch.bucketize (right=False): the number of bounds strictly below s.
            let bucket = bounds.iter().take_while(|&&m| m < s).count();
            q.push(order[bucket]);
        }
    }
    if q.len() % 2 == 1 {
        // bitsandbytes pads the scaled values with a zero, whose code is the bucket of 0.
        let bucket = bounds.iter().take_while(|&&m| m < 0.0).count();
        q.push(order[bucket]);
    }
    let packed = q.chunks(2).map(|p| (p[0] << 4) | p[1]).collect();
    (packed, absmax)
}

/// The `index`-th 4-bit code of a packed buffer (high nibble first).
pub fn nibble(packed: &[u8], index: usize) -> u8 {
    let byte = packed[index / 2];
    if index.is_multiple_of(2) {
        byte >> 4
    } else {
        byte & 0x0f
    }
}

/// Dequantizes `n` 4-bit codes: `table[code] * absmax[i / blocksize]` in f32.
pub fn dequantize_4bit(
    packed: &[u8],
    absmax: &[f32],
    blocksize: usize,
    table: &[f32; 16],
    n: usize,
) -> Vec<f32> {
    (0..n)
        .map(|i| table[nibble(packed, i) as usize] * absmax[i / blocksize])
        .collect()
}

/// 8-bit blockwise quantization with a sorted 256-entry `code` table, as bitsandbytes'
/// CPU kernel: `(codes, absmax)`. The kernel first sets `code[0] = -1`, which this function
/// does on its copy as well.
pub fn quantize_blockwise(x: &[f32], code: &[f32; 256], blocksize: usize) -> (Vec<u8>, Vec<f32>) {
    let blocksize = blocksize.max(1);
    let mut code = *code;
    code[0] = -1.0;
    let absmax: Vec<f32> = x
        .chunks(blocksize)
        .map(|b| b.iter().fold(-f32::MAX, |m, v| m.max(v.abs())))
        .collect();
    let mut out = Vec::with_capacity(x.len());
    for (b, block) in x.chunks(blocksize).enumerate() {
        for &v in block {
            let normed = v / absmax[b];
            // The last code at or below the value, then the nearer of it and the next one.
            let mut idx = code.partition_point(|&c| c <= normed).saturating_sub(1);
            if idx < 255 {
                let left = (normed - code[idx]).abs();
                let right = (normed - code[idx + 1]).abs();
                if right < left {
                    idx += 1;
                }
            }
            out.push(idx as u8);
        }
    }
    (out, absmax)
}

/// Dequantizes 8-bit blockwise codes: `code[q] * absmax[i / blocksize]` in f32.
pub fn dequantize_blockwise(q: &[u8], absmax: &[f32], code: &[f32], blocksize: usize) -> Vec<f32> {
    q.iter()
        .enumerate()
        .map(|(i, &c)| code[c as usize] * absmax[i / blocksize])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nf4_round_trips_its_own_table() {
        let x: Vec<f32> = NF4.to_vec();
        let (packed, absmax) = quantize_4bit(&x, 64, FourBit::Nf4);
        assert_eq!(absmax, vec![1.0]);
        let back = dequantize_4bit(&packed, &absmax, 64, &NF4, x.len());
        assert_eq!(back, x);
        assert_eq!(packed[0], 0x01);
    }

    #[test]
    fn fp4_codes_follow_the_sign_bit() {
        let x = [1.0f32, -1.0, 0.5, -0.5, 0.0];
        let (packed, _) = quantize_4bit(&x, 64, FourBit::Fp4);
        let codes: Vec<u8> = (0..5).map(|i| nibble(&packed, i)).collect();
        assert_eq!(codes, vec![3, 11, 5, 13, 0]);
    }

    #[test]
    fn dynamic_map_is_sorted_with_zero_and_one() {
        let m = dynamic_map();
        assert!(m.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(m[127], 0.0);
        assert_eq!(m[255], 1.0);
        let (q, absmax) = quantize_blockwise(&[0.5, -0.25, 1.0, 0.0], &m, 256);
        assert_eq!(absmax, vec![1.0]);
        assert_eq!(q[2], 255);
        assert_eq!(q[3], 127);
    }
}
