//! Importance matrices as `llama-imatrix` writes them and `llama-quantize` reads them: per
//! weight matrix (by GGUF name), the sum over calibration tokens of each input column's
//! squared activation and the token count. Read from the legacy binary format (`.dat`,
//! `.imatrix`: values stored as `sum / count * ncall`) or the GGUF format (`*.in_sum2` and
//! `*.counts` tensors); the importance a quantizer gets is `sum / count` per column
//! (`load_imatrix` in llama.cpp's `tools/quantize/quantize.cpp`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use super::file::{GgufFile, OutTensor, Value};
use super::GgmlType;

/// One matrix's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct ImatrixEntry {
    /// Per column (and per expert, for 3-D weights), the accumulated squared activations.
    pub sums: Vec<f32>,
    /// Tokens accumulated, per expert (one count for a dense matrix).
    pub counts: Vec<f32>,
}

/// An importance matrix.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Imatrix {
    /// Entries by GGUF tensor name.
    pub entries: BTreeMap<String, ImatrixEntry>,
    /// Calibration data set names.
    pub datasets: Vec<String>,
    /// Chunks the statistics were collected over.
    pub chunk_count: u32,
    /// Tokens per chunk.
    pub chunk_size: u32,
    /// Read from the legacy format (sums already divided by the count and times `ncall`).
    pub legacy: bool,
}

impl Imatrix {
    /// The importance of each column of `name` (`sum / count`), as `llama-quantize` hands it
    /// to the quantizers; `None` when the matrix has no entry.
    pub fn importance(&self, name: &str) -> Option<Vec<f32>> {
        let e = self.entries.get(name)?;
        if self.legacy {
            let ncall = e.counts.first().copied().unwrap_or(0.0);
            return Some(if ncall > 0.0 {
                e.sums.iter().map(|s| s / ncall).collect()
            } else {
                e.sums.clone()
            });
        }
        let n = e.counts.len().max(1);
        let ne0 = e.sums.len() / n;
        let mut out = vec![0.0f32; e.sums.len()];
        for j in 0..n {
            let count = e.counts.get(j).copied().unwrap_or(0.0).round();
            for i in 0..ne0 {
                out[j * ne0 + i] = if count > 0.0 {
                    e.sums[j * ne0 + i] / count
                } else {
                    1.0
                };
            }
        }
        Some(out)
    }

    /// Reads a GGUF or legacy imatrix file; errors say what is wrong and where.
    pub fn read(path: &Path) -> Result<Imatrix, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        if bytes.starts_with(b"GGUF") {
            Imatrix::from_gguf(&bytes)
        } else {
            Imatrix::from_legacy(&bytes)
        }
    }

    fn from_gguf(bytes: &[u8]) -> Result<Imatrix, String> {
        let f = GgufFile::read(bytes).map_err(|e| format!("invalid GGUF: {e}"))?;
        let mut im = Imatrix::default();
        if let Some(v) = f.get("imatrix.datasets").and_then(Value::as_array) {
            im.datasets = v
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect();
        }
        let has_meta = f.get("imatrix.datasets").is_some()
            && f.get("imatrix.chunk_count").is_some()
            && f.get("imatrix.chunk_size").is_some();
        if !has_meta {
            return Err("metadata `imatrix.datasets`, `imatrix.chunk_count` or `imatrix.chunk_size` missing (llama-quantize refuses such a file)".into());
        }
        im.chunk_count = f
            .get("imatrix.chunk_count")
            .and_then(Value::as_i64)
            .unwrap_or(0) as u32;
        im.chunk_size = f
            .get("imatrix.chunk_size")
            .and_then(Value::as_i64)
            .unwrap_or(0) as u32;
        let mut sums: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        let mut counts: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for t in &f.tensors {
            let (base, is_sum) = if let Some(b) = t.name.strip_suffix(".in_sum2") {
                (b, true)
            } else if let Some(b) = t.name.strip_suffix(".counts") {
                (b, false)
            } else {
                continue;
            };
            if t.ty != GgmlType::F32 {
                return Err(format!("tensor `{}` is {}, not f32", t.name, t.ty));
            }
            let data = f.data(bytes, t)?;
            let v: Vec<f32> = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if is_sum {
                sums.insert(base.to_string(), v);
            } else {
                counts.insert(base.to_string(), v);
            }
        }
        for (name, s) in sums {
            let c = counts
                .remove(&name)
                .ok_or_else(|| format!("`{name}` has sums but no counts"))?;
            if c.is_empty() || s.len() % c.len() != 0 {
                return Err(format!(
                    "`{name}`: {} sums do not split into {} counts",
                    s.len(),
                    c.len()
                ));
            }
            im.entries.insert(name, ImatrixEntry { sums: s, counts: c });
        }
        if let Some(name) = counts.keys().next() {
            return Err(format!("`{name}` has counts but no sums"));
        }
        if im.entries.is_empty() {
            return Err("no entries".into());
        }
        Ok(im)
    }

    fn from_legacy(b: &[u8]) -> Result<Imatrix, String> {
        struct Cur<'a> {
            b: &'a [u8],
            at: usize,
        }
        impl Cur<'_> {
            fn left(&self) -> usize {
                self.b.len() - self.at
            }
            fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
                if n > self.left() {
                    return Err(format!("truncated in {what} at byte {}", self.at));
                }
                self.at += n;
                Ok(&self.b[self.at - n..self.at])
            }
            fn i32(&mut self, what: &str) -> Result<i32, String> {
                let s = self.take(4, what)?;
                Ok(i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
            }
        }
        let mut c = Cur { b, at: 0 };
        let n_entries = c.i32("the entry count")?;
        if n_entries < 1 {
            return Err("no data (not a GGUF file and no legacy entries)".into());
        }
        let mut im = Imatrix {
            legacy: true,
            ..Imatrix::default()
        };
        for i in 0..n_entries {
            let len = c.i32("a name length")?;
            if !(0..=4096).contains(&len) {
                return Err(format!("entry {i}: name length {len}"));
            }
            let name = String::from_utf8(c.take(len as usize, "a name")?.to_vec())
                .map_err(|_| format!("entry {i}: name is not UTF-8"))?;
            let ncall = c.i32("ncall")?;
            let nval = c.i32("the value count")?;
            if nval < 1 || nval as usize > c.left() / 4 {
                return Err(format!("entry `{name}`: {nval} values"));
            }
            let raw = c.take(nval as usize * 4, "values")?;
            let sums = raw
                .chunks_exact(4)
                .map(|v| f32::from_le_bytes([v[0], v[1], v[2], v[3]]))
                .collect();
            im.entries.insert(
                name,
                ImatrixEntry {
                    sums,
                    counts: vec![ncall as f32],
                },
            );
        }
        if c.left() >= 4 {
            im.chunk_count = c.i32("the chunk count")?.max(0) as u32;
            if c.left() >= 4 {
                let len = c.i32("the dataset name length")?;
                if len > 0 && (len as usize) <= c.left() {
                    let d = c.take(len as usize, "the dataset name")?;
                    im.datasets.push(String::from_utf8_lossy(d).into_owned());
                }
            }
        }
        Ok(im)
    }

    /// Writes the GGUF format `llama-imatrix` writes (`general.type = imatrix`, datasets,
    /// chunk count and size; `NAME.in_sum2` `[ne0, n_mat]` and `NAME.counts` `[1, n_mat]`
    /// tensors in name order).
    pub fn write_gguf(&self, path: &Path) -> std::io::Result<u64> {
        let kv = vec![
            ("general.type".to_string(), Value::String("imatrix".into())),
            (
                "imatrix.datasets".to_string(),
                Value::strings(self.datasets.clone()),
            ),
            (
                "imatrix.chunk_count".to_string(),
                Value::U32(self.chunk_count),
            ),
            (
                "imatrix.chunk_size".to_string(),
                Value::U32(self.chunk_size),
            ),
        ];
        let mut tensors = Vec::new();
        for (name, e) in &self.entries {
            let n = e.counts.len().max(1) as u64;
            let f32s = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
            tensors.push(OutTensor {
                name: format!("{name}.in_sum2"),
                ne: vec![e.sums.len() as u64 / n, n],
                ty: GgmlType::F32,
                data: Cow::Owned(f32s(&e.sums)),
            });
            tensors.push(OutTensor {
                name: format!("{name}.counts"),
                ne: vec![1, n],
                ty: GgmlType::F32,
                data: Cow::Owned(f32s(&e.counts)),
            });
        }
        super::file::write(path, &kv, &tensors, 32)
    }
}
