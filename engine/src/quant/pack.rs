//! Integer packing into 32-bit words, as the quantized checkpoint formats store codes.
//!
//! - **Bit stream** (GPTQ `qweight`/`qzeros`, compressed-tensors `weight_packed`): codes of
//!   `bits` bits laid end to end from the least significant bit of the first word on, a code
//!   crossing a word boundary continuing in the low bits of the next word. For 2, 4 and 8
//!   bits this is `32 / bits` codes per word, code `k` at bit `bits * k`; for 3 bits it is
//!   AutoGPTQ's layout of 32 codes in 3 words.
//! - **AWQ order** (AutoAWQ's GEMM `qweight`/`qzeros`): 8 four-bit codes per word, where
//!   nibble `k` (bits `4k..4k+4`) holds column `AWQ_ORDER[k]` of its group of 8.

/// The column held by nibble `k` of an AutoAWQ word.
pub const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// Words needed for `count` codes of `bits` bits.
pub fn packed_words(count: usize, bits: u32) -> usize {
    (count * bits as usize).div_ceil(32)
}

/// Packs `codes` (each below `2^bits`) as a bit stream of 32-bit words.
pub fn pack_bits(codes: &[u32], bits: u32) -> Vec<u32> {
    let mut out = vec![0u32; packed_words(codes.len(), bits)];
    let mask = if bits == 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    for (i, &c) in codes.iter().enumerate() {
        let c = u64::from(c & mask);
        let bit = i * bits as usize;
        let (w, off) = (bit / 32, bit % 32);
        let v = c << off;
        out[w] |= v as u32;
        if off + bits as usize > 32 {
            out[w + 1] |= (v >> 32) as u32;
        }
    }
    out
}

/// Code `i` of a bit stream of `bits`-bit codes, reading word `k` as `word(k)`.
pub fn unpack_bit(word: impl Fn(usize) -> u32, i: usize, bits: u32) -> u32 {
    let bit = i * bits as usize;
    let (w, off) = (bit / 32, bit % 32);
    let mut v = u64::from(word(w)) >> off;
    if off + bits as usize > 32 {
        v |= u64::from(word(w + 1)) << (32 - off);
    }
    let mask = if bits == 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    v as u32 & mask
}

/// The first `count` codes of a bit stream.
pub fn unpack_bits(words: &[u32], bits: u32, count: usize) -> Vec<u32> {
    (0..count)
        .map(|i| unpack_bit(|k| words[k], i, bits))
        .collect()
}

/// Packs 8 four-bit codes (columns `0..8` of a group) into one AutoAWQ word.
pub fn pack_awq(codes: [u32; 8]) -> u32 {
    AWQ_ORDER
        .iter()
        .enumerate()
        .fold(0u32, |w, (k, &col)| w | ((codes[col] & 0xf) << (4 * k)))
}

/// The 8 four-bit codes (columns `0..8` of a group) of one AutoAWQ word.
pub fn unpack_awq(word: u32) -> [u32; 8] {
    let mut out = [0u32; 8];
    for (k, &col) in AWQ_ORDER.iter().enumerate() {
        out[col] = (word >> (4 * k)) & 0xf;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_streams_round_trip_at_every_width() {
        for bits in [2u32, 3, 4, 8] {
            let codes: Vec<u32> = (0..96u32).map(|i| (i * 7 + 3) % (1 << bits)).collect();
            let words = pack_bits(&codes, bits);
            assert_eq!(words.len(), 96 * bits as usize / 32);
            assert_eq!(unpack_bits(&words, bits, codes.len()), codes);
        }
    }

    #[test]
    fn three_bit_layout_is_autogptq_s() {
        // Code 10 straddles words 0 and 1: its low two bits are bits 30-31 of word 0.
        let mut codes = vec![0u32; 32];
        codes[10] = 0b111;
        let w = pack_bits(&codes, 3);
        assert_eq!(w, vec![0xC000_0000, 0x1, 0]);
        let mut codes = vec![0u32; 32];
        codes[21] = 0b110;
        let w = pack_bits(&codes, 3);
        assert_eq!(w, vec![0, 0, 0b11]);
    }

    #[test]
    fn awq_nibble_order() {
        let w = pack_awq([0, 1, 2, 3, 4, 5, 6, 7]);
        // Nibbles from the low end hold columns 0, 2, 4, 6, 1, 3, 5, 7.
        assert_eq!(w, 0x7531_6420);
        assert_eq!(unpack_awq(w), [0, 1, 2, 3, 4, 5, 6, 7]);
    }
}
