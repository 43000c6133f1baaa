//! Model paths confined to a configured root (a coordinator or worker serving many users).

use std::path::{Component, Path, PathBuf};

/// A model path outside the configured model root, or one that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEscape {
    /// The offending path.
    pub path: PathBuf,
    /// Why it is refused.
    pub reason: String,
}

impl std::fmt::Display for PathEscape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for PathEscape {}

/// Resolves `path` inside `root`: no `..` component, and after following symlinks the path
/// must still lie under the (resolved) root. Returns the resolved path.
pub fn confine(path: &Path, root: &Path) -> Result<PathBuf, PathEscape> {
    let escape = |reason: String| PathEscape {
        path: path.to_path_buf(),
        reason,
    };
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(escape("model paths may not contain `..`".into()));
    }
    let root = root.canonicalize().map_err(|e| {
        escape(format!(
            "model root {} cannot be resolved: {e}",
            root.display()
        ))
    })?;
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    };
    let real = joined
        .canonicalize()
        .map_err(|e| escape(format!("cannot be resolved: {e}")))?;
    if real.starts_with(&root) {
        Ok(real)
    } else {
        Err(escape(format!(
            "resolves to {}, outside the model root {}",
            real.display(),
            root.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confine_accepts_inside_and_refuses_escapes() {
        let tmp = std::env::temp_dir().join(format!("compsafe-confine-{}", std::process::id()));
        let root = tmp.join("root");
        std::fs::create_dir_all(root.join("m")).unwrap();
        std::fs::create_dir_all(tmp.join("outside")).unwrap();
        assert!(confine(&root.join("m"), &root).is_ok());
        assert!(confine(Path::new("m"), &root).is_ok());
        let e = confine(&root.join("m/../m"), &root).unwrap_err();
        assert!(e.reason.contains(".."), "{e}");
        assert!(confine(&tmp.join("outside"), &root).is_err());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(tmp.join("outside"), root.join("link")).unwrap();
            let e = confine(&root.join("link"), &root).unwrap_err();
            assert!(e.reason.contains("outside the model root"), "{e}");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
