//! The bundled suites: one descriptor (`<name>.toml`) each under the suites folder.

use std::path::{Path, PathBuf};

use super::{read_text, SuiteSource};
use crate::error::FieldError;

/// Directory of the bundled suites: `$COMPSAFE_SUITES` when set, else the workspace's
/// `suites/` folder.
pub fn bundled_root() -> PathBuf {
    if let Some(p) = std::env::var_os("COMPSAFE_SUITES").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("suites");
    if built.is_dir() {
        return built;
    }
    // An installed binary away from its source tree: the working directory's suites/.
    PathBuf::from("suites")
}

/// Names of the bundled suites under `root` (one `<name>.toml` descriptor each), sorted.
pub fn bundled_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = descriptor_dirs(root)
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The folders holding descriptors: the root and its immediate subfolders (e.g. `fixture/`).
fn descriptor_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        let mut subs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        dirs.extend(subs);
    }
    dirs
}

/// Reads the descriptor of bundled suite `name` under `root`. Returns the source and the
/// directory its paths are relative to.
pub fn bundled_source(root: &Path, name: &str) -> Result<(SuiteSource, PathBuf), FieldError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let found = if valid {
        descriptor_dirs(root)
            .into_iter()
            .map(|d| d.join(format!("{name}.toml")))
            .find(|p| p.is_file())
    } else {
        None
    };
    let Some(path) = found else {
        return Err(FieldError::new(
            "name",
            name,
            format!(
                "no bundled suite of that name in {} (bundled: {})",
                root.display(),
                bundled_names(root).join(", ")
            ),
        ));
    };
    let text = read_text(&path)?;
    let src: SuiteSource = toml::from_str(&text).map_err(|e| {
        FieldError::new("(descriptor)", name, e.message().to_string()).in_file(&path)
    })?;
    // A descriptor's `file` is relative to the folder that holds the descriptor.
    let base = path
        .parent()
        .map_or_else(|| root.to_path_buf(), Path::to_path_buf);
    Ok((src, base))
}
