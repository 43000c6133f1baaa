//! Raw tensors of a checkpoint's safetensors files, kept as stored bytes until a format
//! decodes them; every accessor checks the dtype and shape it expects and names the file,
//! the tensor and the field in its error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::error::{EngineError, Result};

/// One stored tensor.
#[derive(Debug, Clone)]
pub struct RawTensor {
    /// The file it was read from.
    pub file: PathBuf,
    /// Its name.
    pub name: String,
    /// Stored dtype.
    pub dtype: Dtype,
    /// Stored shape.
    pub shape: Vec<usize>,
    /// Stored bytes (little-endian).
    pub data: Vec<u8>,
}

impl RawTensor {
    fn err(&self, what: impl std::fmt::Display) -> EngineError {
        EngineError::bad_file(&self.file, format!("tensor `{}`: {what}", self.name))
    }

    /// Elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Fails unless the shape is `want` (`field` names what the shape follows from).
    pub fn expect_shape(&self, want: &[usize], field: &str) -> Result<()> {
        if self.shape != want {
            return Err(self.err(format!(
                "shape {:?}, but {field} implies {want:?}",
                self.shape
            )));
        }
        Ok(())
    }

    fn expect_dtype(&self, allowed: &[Dtype]) -> Result<()> {
        if !allowed.contains(&self.dtype) {
            return Err(self.err(format!(
                "dtype {:?}, expected {}",
                self.dtype,
                allowed
                    .iter()
                    .map(|d| format!("{d:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        Ok(())
    }

    /// The values of a float tensor (F32, F16 or BF16) as f32, each checked finite.
    pub fn floats(&self) -> Result<Vec<f32>> {
        self.expect_dtype(&[Dtype::F32, Dtype::F16, Dtype::BF16])?;
        let v: Vec<f32> = match self.dtype {
            Dtype::F32 => self
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => self
                .data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => self
                .data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        };
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(self.err(format!("non-finite value {} at flat index {i}", v[i])));
        }
        Ok(v)
    }

    /// The words of an I32 (or U32) tensor, as stored bits.
    pub fn words(&self) -> Result<Vec<u32>> {
        self.expect_dtype(&[Dtype::I32, Dtype::U32])?;
        Ok(self
            .data
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// The values of an integer tensor (I64, I32, I16 or I8) as i64.
    pub fn ints(&self) -> Result<Vec<i64>> {
        self.expect_dtype(&[Dtype::I64, Dtype::I32, Dtype::I16, Dtype::I8])?;
        Ok(match self.dtype {
            Dtype::I64 => self
                .data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
            Dtype::I32 => self
                .data
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            Dtype::I16 => self
                .data
                .chunks_exact(2)
                .map(|b| i64::from(i16::from_le_bytes([b[0], b[1]])))
                .collect(),
            _ => self.data.iter().map(|&b| i64::from(b as i8)).collect(),
        })
    }

    /// The bytes of a U8 tensor.
    pub fn bytes_u8(&self) -> Result<&[u8]> {
        self.expect_dtype(&[Dtype::U8])?;
        Ok(&self.data)
    }

    /// The bytes of an I8 tensor, as signed values.
    pub fn bytes_i8(&self) -> Result<Vec<i8>> {
        self.expect_dtype(&[Dtype::I8])?;
        Ok(self.data.iter().map(|&b| b as i8).collect())
    }

    /// The bytes of an F8_E4M3 tensor.
    pub fn bytes_f8(&self) -> Result<&[u8]> {
        self.expect_dtype(&[Dtype::F8_E4M3])?;
        Ok(&self.data)
    }

    /// Bits per element of the stored dtype.
    pub fn bits(&self) -> usize {
        self.dtype.bitsize()
    }
}

/// Every tensor of a checkpoint's weight files, by name.
#[derive(Debug, Default)]
pub struct RawTensors {
    /// The tensors.
    pub map: BTreeMap<String, RawTensor>,
    /// The first weight file (errors about a missing tensor name it).
    pub first_file: PathBuf,
}

impl RawTensors {
    /// Reads every tensor of `files`.
    pub fn read(files: &[PathBuf]) -> Result<RawTensors> {
        let mut map = BTreeMap::new();
        for file in files {
            let bytes = crate::loader::map_file(file)?;
            let st = SafeTensors::deserialize(&bytes)
                .map_err(|e| EngineError::bad_file(file, format!("invalid safetensors: {e}")))?;
            for (name, view) in st.tensors() {
                map.insert(
                    name.clone(),
                    RawTensor {
                        file: file.clone(),
                        name,
                        dtype: view.dtype(),
                        shape: view.shape().to_vec(),
                        data: view.data().to_vec(),
                    },
                );
            }
        }
        Ok(RawTensors {
            map,
            first_file: files.first().cloned().unwrap_or_default(),
        })
    }

    /// A tensor that must be present; `why` says what needs it.
    pub fn need(&self, name: &str, why: &str) -> Result<&RawTensor> {
        self.map.get(name).ok_or_else(|| {
            EngineError::bad_file(
                &self.first_file,
                format!("tensor `{name}` is missing ({why})"),
            )
        })
    }

    /// A tensor that may be absent.
    pub fn get(&self, name: &str) -> Option<&RawTensor> {
        self.map.get(name)
    }

    /// The file holding `name`, else the first weight file.
    pub fn file_of(&self, name: &str) -> &Path {
        self.map
            .get(name)
            .map_or(self.first_file.as_path(), |t| t.file.as_path())
    }
}
