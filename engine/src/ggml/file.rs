//! GGUF files read and written the way llama.cpp does: metadata kept in file order with its
//! value types (so a copy writes the same bytes), tensor infos with ggml's dimension order
//! (`ne[0]` = row length first), data aligned to `general.alignment` (32 by default) with
//! every tensor padded to it. The reader first walks the header with every length checked
//! ([`crate::gguf_header::scan`]), so a hostile file is refused before anything is allocated.

use std::io::Write;
use std::path::Path;

use super::GgmlType;

/// A metadata value with its GGUF type.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// An array: its element type id and elements.
    Array(u32, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The GGUF value type id.
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(..) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// An integer value of any integer type (or a bool), as i64.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => i64::try_from(v).ok()?,
            Value::I64(v) => v,
            Value::Bool(v) => v.into(),
            _ => return None,
        })
    }

    /// A float value (f32 or f64, or an integer).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => self.as_i64().map(|v| v != 0),
        }
    }

    /// The elements of an array value.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, v) => Some(v),
            _ => None,
        }
    }

    /// A string array.
    pub fn strings(v: impl IntoIterator<Item = impl Into<String>>) -> Value {
        Value::Array(8, v.into_iter().map(|s| Value::String(s.into())).collect())
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml order: `ne[0]` is the row length.
    pub ne: Vec<u64>,
    /// Storage type.
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Element count.
    pub fn numel(&self) -> u64 {
        self.ne.iter().product()
    }

    /// Bytes of the data.
    pub fn bytes(&self) -> u64 {
        self.ty.bytes_for(self.numel()).unwrap_or(0)
    }

    /// Dimensions in row-major (candle / PyTorch) order: `[rows, cols]` for a matrix.
    pub fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A GGUF file's header, read from bytes that stay where they are.
#[derive(Debug, Clone)]
pub struct GgufFile {
    /// Format version.
    pub version: u32,
    /// Metadata in file order.
    pub kv: Vec<(String, Value)>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data alignment.
    pub alignment: u64,
    /// Byte offset of the data section.
    pub data_start: u64,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if n > self.b.len() - self.at {
            return Err(format!("truncated at byte {}", self.at));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u64()? as usize;
        let at = self.at;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| format!("string at byte {at} is not UTF-8"))
    }
    fn value(&mut self, t: u32) -> Result<Value, String> {
        Ok(match t {
            0 => Value::U8(self.arr::<1>()?[0]),
            1 => Value::I8(self.arr::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr()?)),
            3 => Value::I16(i16::from_le_bytes(self.arr()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.arr()?)),
            6 => Value::F32(f32::from_le_bytes(self.arr()?)),
            7 => Value::Bool(self.arr::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 => {
                let et = self.u32()?;
                let n = self.u64()? as usize;
                let mut v = Vec::with_capacity(n.min(self.b.len()));
                for _ in 0..n {
                    v.push(self.value(et)?);
                }
                Value::Array(et, v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.arr()?)),
            12 => Value::F64(f64::from_le_bytes(self.arr()?)),
            other => return Err(format!("unknown metadata value type {other}")),
        })
    }
}

impl GgufFile {
    /// Reads the header of GGUF `bytes`; errors say what and where.
    pub fn read(bytes: &[u8]) -> Result<GgufFile, String> {
        let h = crate::gguf_header::scan(bytes)?;
        let mut r = Reader { b: bytes, at: 8 };
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        let mut kv = Vec::with_capacity(n_kv as usize);
        let mut alignment = 32u64;
        for _ in 0..n_kv {
            let key = r.string()?;
            let t = r.u32()?;
            let v = r.value(t).map_err(|e| format!("metadata `{key}`: {e}"))?;
            if key == "general.alignment" {
                alignment = v.as_i64().filter(|a| *a > 0).unwrap_or(32) as u64;
            }
            kv.push((key, v));
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string()?;
            let nd = r.u32()?;
            let mut ne = Vec::with_capacity(nd as usize);
            for _ in 0..nd {
                ne.push(r.u64()?);
            }
            let t = r.u32()?;
            let offset = r.u64()?;
            let ty = GgmlType::from_id(t)
                .ok_or_else(|| format!("tensor `{name}`: ggml type {t} is not known"))?;
            tensors.push(TensorInfo {
                name,
                ne,
                ty,
                offset,
            });
        }
        Ok(GgufFile {
            version: h.version,
            kv,
            tensors,
            alignment,
            data_start: h.data_start,
        })
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A tensor info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of a tensor's data within the file's `bytes`.
    pub fn data<'a>(&self, bytes: &'a [u8], t: &TensorInfo) -> Result<&'a [u8], String> {
        let start = self.data_start + t.offset;
        let end = start + t.bytes();
        bytes
            .get(start as usize..end as usize)
            .ok_or_else(|| format!("tensor `{}`: data runs past the end of the file", t.name))
    }
}

/// Sets `key` as llama.cpp's `gguf_set_val_*` does: an existing entry is removed and the new
/// one appended at the end.
pub fn set_kv(kv: &mut Vec<(String, Value)>, key: &str, v: Value) {
    kv.retain(|(k, _)| k != key);
    kv.push((key.to_string(), v));
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(et, items) => {
            out.extend_from_slice(&et.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

/// A tensor to write: name, dimensions in ggml order, type and data.
#[derive(Debug, Clone)]
pub struct OutTensor<'a> {
    /// GGUF name.
    pub name: String,
    /// Dimensions, `ne[0]` first.
    pub ne: Vec<u64>,
    /// Storage type.
    pub ty: GgmlType,
    /// The data (exactly the type's bytes for the element count).
    pub data: std::borrow::Cow<'a, [u8]>,
}

fn pad_to(out: &mut Vec<u8>, align: u64) {
    while !(out.len() as u64).is_multiple_of(align) {
        out.push(0);
    }
}

/// The header bytes (magic to the padding before the data) of a GGUF v3 file.
pub fn header_bytes(kv: &[(String, Value)], tensors: &[OutTensor<'_>], alignment: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        put_str(&mut out, k);
        out.extend_from_slice(&v.type_id().to_le_bytes());
        put_value(&mut out, v);
    }
    let mut offset = 0u64;
    for t in tensors {
        put_str(&mut out, &t.name);
        // ggml_n_dims: trailing dimensions of 1 are not written (at least one is).
        let mut nd = t.ne.len();
        while nd > 1 && t.ne[nd - 1] == 1 {
            nd -= 1;
        }
        out.extend_from_slice(&(nd as u32).to_le_bytes());
        for d in &t.ne[..nd] {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ty.id().to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset += (t.data.len() as u64).div_ceil(alignment) * alignment;
    }
    pad_to(&mut out, alignment);
    out
}

/// The whole GGUF v3 file in memory (what [`write`] writes).
pub fn to_bytes(kv: &[(String, Value)], tensors: &[OutTensor<'_>], alignment: u64) -> Vec<u8> {
    let mut out = header_bytes(kv, tensors, alignment);
    for t in tensors {
        out.extend_from_slice(&t.data);
        pad_to(&mut out, alignment);
    }
    out
}

/// Writes a GGUF v3 file to `path` (through a `.partial` file renamed at the end).
pub fn write(
    path: &Path,
    kv: &[(String, Value)],
    tensors: &[OutTensor<'_>],
    alignment: u64,
) -> std::io::Result<u64> {
    for t in tensors {
        let want = t.ty.bytes_for(t.ne.iter().product());
        if want != Some(t.data.len() as u64) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "tensor `{}`: {} bytes for a {} tensor of {:?}",
                    t.name,
                    t.data.len(),
                    t.ty,
                    t.ne
                ),
            ));
        }
    }
    let tmp = path.with_extension("gguf.partial");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let head = header_bytes(kv, tensors, alignment);
    f.write_all(&head)?;
    let mut total = head.len() as u64;
    let zeros = vec![0u8; alignment as usize];
    for t in tensors {
        f.write_all(&t.data)?;
        let pad = (t.data.len() as u64).div_ceil(alignment) * alignment - t.data.len() as u64;
        f.write_all(&zeros[..pad as usize])?;
        total += t.data.len() as u64 + pad;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(total)
}
