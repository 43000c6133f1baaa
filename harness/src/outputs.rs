//! Where the analysis commands (heads, sensitivity, conditioned) put their files.

use std::path::{Path, PathBuf};

use crate::exit::Failure;

/// `--out`, or `out/<command>-<model file name>`; created.
pub fn output_dir(out: Option<&Path>, command: &str, model: &Path) -> Result<PathBuf, Failure> {
    let dir = out.map(Path::to_path_buf).unwrap_or_else(|| {
        PathBuf::from("out").join(format!(
            "{command}-{}",
            model
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ))
    });
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::input(format!("--out {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Writes one output file; the error names it.
pub fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).map_err(|e| Failure::input(format!("{}: {e}", path.display())))
}
