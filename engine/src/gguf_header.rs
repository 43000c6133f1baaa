//! A bounds-checked walk over a GGUF header (magic, version, metadata, tensor infos) that
//! allocates nothing in proportion to what the file claims. It runs before the header is
//! decoded for real, so a hostile or truncated file is refused with the offset at fault
//! instead of making the decoder allocate what the file merely announces.

/// What the walk learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata entries.
    pub metadata: u64,
    /// Tensor infos: name, dimensions, ggml type and data offset (relative to the data).
    pub tensors: Vec<(String, Vec<u64>, u32, u64)>,
    /// Where tensor data starts (aligned).
    pub data_start: u64,
}

struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cur<'_> {
    fn take(&mut self, n: u64, what: &str) -> Result<&[u8], String> {
        let left = (self.b.len() - self.at) as u64;
        if n > left {
            return Err(format!(
                "{what} at byte {} needs {n} bytes but only {left} remain",
                self.at
            ));
        }
        let s = &self.b[self.at..self.at + n as usize];
        self.at += n as usize;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().unwrap_or([0; 4]),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().unwrap_or([0; 8]),
        ))
    }
    fn string(&mut self, what: &str) -> Result<&str, String> {
        let at = self.at;
        let n = self.u64(what)?;
        let s = self.take(n, what)?;
        std::str::from_utf8(s).map_err(|_| format!("{what} at byte {at} is not UTF-8"))
    }
}

/// Size in bytes of a scalar metadata value of GGUF type `t`; `None` for strings and arrays.
fn scalar_size(t: u32) -> Result<Option<u64>, String> {
    Ok(match t {
        0 | 1 | 7 => Some(1), // u8, i8, bool
        2 | 3 => Some(2),     // u16, i16
        4..=6 => Some(4),     // u32, i32, f32
        10..=12 => Some(8),   // u64, i64, f64
        8 | 9 => None,        // string, array
        other => return Err(format!("unknown metadata value type {other}")),
    })
}

fn skip_value(c: &mut Cur<'_>, t: u32, key: &str, depth: u32) -> Result<(), String> {
    match scalar_size(t).map_err(|e| format!("metadata `{key}`: {e}"))? {
        Some(n) => {
            c.take(n, &format!("metadata `{key}`"))?;
        }
        None if t == 8 => {
            c.string(&format!("metadata `{key}`"))?;
        }
        None => {
            if depth > 2 {
                return Err(format!("metadata `{key}`: arrays nested too deep"));
            }
            let et = c.u32(&format!("metadata `{key}` element type"))?;
            let n = c.u64(&format!("metadata `{key}` length"))?;
            match scalar_size(et).map_err(|e| format!("metadata `{key}`: {e}"))? {
                Some(size) => {
                    let total = size.checked_mul(n).ok_or_else(|| {
                        format!("metadata `{key}`: array of {n} elements overflows")
                    })?;
                    c.take(total, &format!("metadata `{key}`"))?;
                }
                None => {
                    // Every element takes at least 8 bytes: bound the count by what is left.
                    if n > (c.b.len() - c.at) as u64 / 8 {
                        return Err(format!(
                            "metadata `{key}`: {n} elements cannot fit in the file"
                        ));
                    }
                    for _ in 0..n {
                        skip_value(c, et, key, depth + 1)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Byte size of a tensor of ggml type `t` with `dims`, or why not.
pub fn tensor_bytes(t: u32, dims: &[u64]) -> Result<u64, String> {
    let ty =
        crate::ggml::GgmlType::from_id(t).ok_or_else(|| format!("ggml type {t} is not known"))?;
    let mut n: u64 = 1;
    for d in dims {
        n = n
            .checked_mul(*d)
            .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    }
    let be = ty.block_size() as u64;
    if !n.is_multiple_of(be) {
        return Err(format!(
            "{n} elements are not a whole number of {be}-element {} blocks",
            ty.name()
        ));
    }
    ty.bytes_for(n)
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))
}

/// Walks the header of GGUF `bytes`; every length is checked against the bytes present and
/// every tensor's data must lie inside the file.
pub fn scan(bytes: &[u8]) -> Result<GgufHeader, String> {
    let mut c = Cur { b: bytes, at: 0 };
    let magic = c.take(4, "magic")?;
    if magic != b"GGUF" {
        return Err(format!("bad magic {magic:?}: not a GGUF file"));
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(format!("GGUF version {version} is not supported (2 or 3)"));
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    // A metadata entry takes at least 8 + 4 + 1 bytes, a tensor info at least 8 + 4 + 4 + 8.
    let left = (bytes.len() - c.at) as u64;
    if n_kv > left / 13 || n_tensors > left / 24 {
        return Err(format!(
            "{n_kv} metadata entries and {n_tensors} tensors cannot fit in {} bytes",
            bytes.len()
        ));
    }
    let mut alignment = 32u64;
    for _ in 0..n_kv {
        let key = c.string("metadata key")?.to_string();
        let t = c.u32(&format!("metadata `{key}` type"))?;
        if key == "general.alignment" && t <= 5 {
            // Any integer type is honoured by decoders; zero would divide by zero there.
            let at = c.at;
            let what = "metadata `general.alignment`";
            let v: i64 = match t {
                0 => i64::from(c.take(1, what)?[0]),
                1 => i64::from(c.take(1, what)?[0] as i8),
                2 => i64::from(u16::from_le_bytes(
                    c.take(2, what)?.try_into().unwrap_or([0; 2]),
                )),
                3 => i64::from(i16::from_le_bytes(
                    c.take(2, what)?.try_into().unwrap_or([0; 2]),
                )),
                4 => i64::from(c.u32(what)?),
                _ => i64::from(i32::from_le_bytes(
                    c.take(4, what)?.try_into().unwrap_or([0; 4]),
                )),
            };
            if v <= 0 || !(v as u64).is_power_of_two() {
                return Err(format!(
                    "metadata `general.alignment` at byte {at} = {v}: not a power of two"
                ));
            }
            alignment = v as u64;
        } else {
            skip_value(&mut c, t, &key, 0)?;
        }
    }
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let name = c.string("tensor name")?.to_string();
        let nd = c.u32(&format!("tensor `{name}` dimension count"))?;
        if nd > 4 {
            return Err(format!("tensor `{name}` has {nd} dimensions (at most 4)"));
        }
        let mut dims = Vec::with_capacity(nd as usize);
        for _ in 0..nd {
            dims.push(c.u64(&format!("tensor `{name}` dimensions"))?);
        }
        let t = c.u32(&format!("tensor `{name}` type"))?;
        let off = c.u64(&format!("tensor `{name}` offset"))?;
        tensors.push((name, dims, t, off));
    }
    let data_start = (c.at as u64).div_ceil(alignment) * alignment;
    let data_len = (bytes.len() as u64).saturating_sub(data_start);
    for (name, dims, t, off) in &tensors {
        let size = tensor_bytes(*t, dims).map_err(|e| format!("tensor `{name}`: {e}"))?;
        let end = off
            .checked_add(size)
            .ok_or_else(|| format!("tensor `{name}`: offset {off} overflows"))?;
        if end > data_len {
            return Err(format!(
                "tensor `{name}`: data at offset {off} ({size} bytes) runs past the end of the file ({data_len} data bytes)"
            ));
        }
    }
    Ok(GgufHeader {
        version,
        metadata: n_kv,
        tensors,
        data_start,
    })
}
