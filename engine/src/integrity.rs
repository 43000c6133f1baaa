//! Integrity of model files: sha256 of every file, checked against a `MANIFEST` in
//! `sha256sum` format (`<hex>  <relative path>` per line).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};

/// The hash and size of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Path relative to the model directory (the file name for a single file).
    pub name: String,
    /// Lower-case hex sha256.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Outcome of a check against a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// Every pinned file is present with its pinned hash.
    Ok,
    /// At least one file differs or is missing; the messages name each file.
    Failed(Vec<String>),
    /// No manifest to check against.
    Unpinned,
}

impl Integrity {
    /// The report's spelling: `ok`, `failed`, `unpinned`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Integrity::Ok => "ok",
            Integrity::Failed(_) => "failed",
            Integrity::Unpinned => "unpinned",
        }
    }
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), total))
}

/// The files that make up a model: every regular file of a directory (recursively, except
/// `MANIFEST`), or the file itself.
pub fn model_files(path: &Path) -> Result<Vec<(String, PathBuf)>> {
    if path.is_file() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(name, path.to_path_buf())]);
    }
    if !path.is_dir() {
        return Err(EngineError::Missing {
            path: path.to_path_buf(),
            what: "model directory or file".into(),
        });
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| EngineError::Io {
            path: dir.clone(),
            source,
        })?;
        for e in entries {
            let e = e.map_err(|source| EngineError::Io {
                path: dir.clone(),
                source,
            })?;
            let p = e.path();
            let ft = e.file_type().map_err(|source| EngineError::Io {
                path: p.clone(),
                source,
            })?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p
                    .strip_prefix(path)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .replace('\\', "/");
                if rel != "MANIFEST" && rel != "MANIFEST.json" {
                    out.push((rel, p));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Hashes every file of a model.
pub fn digest_model(path: &Path) -> Result<Vec<FileDigest>> {
    model_files(path)?
        .into_iter()
        .map(|(name, p)| {
            let (sha256, bytes) = sha256_file(&p)?;
            Ok(FileDigest {
                name,
                sha256,
                bytes,
            })
        })
        .collect()
}

/// Parses a `sha256sum`-format manifest into name -> hex.
pub fn parse_manifest(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (hash, name) = line
            .split_once(char::is_whitespace)
            .map(|(h, n)| (h, n.trim_start().trim_start_matches('*')))
            .ok_or_else(|| {
                EngineError::bad_file(path, format!("line {}: expected `<sha256>  <file>`", i + 1))
            })?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(EngineError::bad_file(
                path,
                format!("line {}: {hash:?} is not a sha256 hex digest", i + 1),
            ));
        }
        out.insert(name.to_string(), hash.to_ascii_lowercase());
    }
    Ok(out)
}

/// Renders digests as a `sha256sum`-format manifest.
pub fn render_manifest(digests: &[FileDigest]) -> String {
    digests
        .iter()
        .map(|d| format!("{}  {}\n", d.sha256, d.name))
        .collect()
}

/// Hashes a model and checks it against `manifest`, or against its own manifest
/// (`MANIFEST.json`, `MANIFEST`, or `FILE.manifest.json` beside a GGUF file) when none is
/// given; `Unpinned` when there is neither. A JSON manifest also pins every tensor, the chat
/// template and the tokenizer (see [`crate::manifest`]).
pub fn verify(path: &Path, manifest: Option<&Path>) -> Result<(Vec<FileDigest>, Integrity)> {
    crate::manifest::verify(path, manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_byte_fails_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), b"hello").unwrap();
        std::fs::write(dir.path().join("b.json"), b"{}").unwrap();
        let digests = digest_model(dir.path()).unwrap();
        std::fs::write(dir.path().join("MANIFEST"), render_manifest(&digests)).unwrap();
        assert_eq!(verify(dir.path(), None).unwrap().1, Integrity::Ok);
        // sha256("hello") is a published value.
        assert_eq!(
            digests[0].sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        std::fs::write(dir.path().join("a.bin"), b"hellp").unwrap();
        match verify(dir.path(), None).unwrap().1 {
            Integrity::Failed(msgs) => {
                assert_eq!(msgs.len(), 1);
                assert!(msgs[0].starts_with("INTEGRITY FAILURE: a.bin"), "{msgs:?}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        std::fs::remove_file(dir.path().join("b.json")).unwrap();
        let Integrity::Failed(msgs) = verify(dir.path(), None).unwrap().1 else {
            panic!()
        };
        assert!(msgs
            .iter()
            .any(|m| m.contains("b.json") && m.contains("missing")));
    }

    #[test]
    fn malformed_manifest_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("MANIFEST");
        std::fs::write(&m, "nothex  a.bin\n").unwrap();
        let e = parse_manifest(&m).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("MANIFEST"), "{e}");
    }
}
