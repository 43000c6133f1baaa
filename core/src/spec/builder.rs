//! Specs built from a command's flags: the analysis commands (`compsafe heads`, `search`,
//! ...) are shorthands for a sweep with one `[analysis.*]` section. The builder assembles the
//! spec as a TOML document, validates it like any spec, and names the flags (not spec keys)
//! in errors; the text it serializes is the spec the sweep runs.

use std::path::Path;

use super::{validate_text, Validated};
use crate::error::FieldError;

/// A spec under construction.
#[derive(Debug, Clone)]
pub struct SpecBuilder {
    doc: toml::Table,
    flags: Vec<(String, String)>,
}

impl SpecBuilder {
    /// A sweep named `name` of the model at `model` (made absolute by the caller), with the
    /// reference alone and no suites.
    pub fn new(name: &str, model: &Path) -> SpecBuilder {
        let mut b = SpecBuilder {
            doc: toml::Table::new(),
            flags: Vec::new(),
        };
        b.set("sweep.name", name);
        b.set("model.path", model.display().to_string());
        b.set_list::<&str>("variants", &[]);
        b
    }

    /// Sets the value at a dotted key (`analysis.heads.limit`), creating tables on the way.
    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) -> &mut SpecBuilder {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut table = &mut self.doc;
        for p in parts {
            let entry = table
                .entry(p.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            table = entry.as_table_mut().expect("made a table above");
        }
        table.insert(last.to_string(), value.into());
        self
    }

    /// Sets a list of strings at `key`.
    pub fn set_list<S: AsRef<str>>(&mut self, key: &str, items: &[S]) -> &mut SpecBuilder {
        let list = items
            .iter()
            .map(|s| toml::Value::String(s.as_ref().to_string()))
            .collect();
        self.set(key, toml::Value::Array(list))
    }

    /// Sets the value at `key` when there is one.
    pub fn set_opt<V: Into<toml::Value>>(
        &mut self,
        key: &str,
        value: Option<V>,
    ) -> &mut SpecBuilder {
        if let Some(v) = value {
            self.set(key, v);
        }
        self
    }

    /// Errors about `key` name `flag` instead (the user wrote a flag, not a spec).
    pub fn flag(&mut self, key: &str, flag: &str) -> &mut SpecBuilder {
        self.flags.push((key.to_string(), flag.to_string()));
        self
    }

    /// The spec's text.
    pub fn text(&self) -> String {
        toml::to_string(&self.doc).unwrap_or_default()
    }

    /// The spec validated as if it were the file `path` (which need not exist); errors name
    /// the flags the keys came from and no file.
    pub fn validate(&self, path: &Path) -> Result<Validated, FieldError> {
        validate_text(&self.text(), path).map_err(|errors| {
            let e = errors
                .0
                .into_iter()
                .next()
                .unwrap_or_else(|| FieldError::new("(spec)", "", "invalid"));
            self.named(e)
        })
    }

    fn named(&self, mut e: FieldError) -> FieldError {
        e.file = None;
        if let Some((key, flag)) = self
            .flags
            .iter()
            .find(|(k, _)| e.field == *k || e.field.starts_with(&format!("{k}[")))
        {
            e.field = e.field.replacen(key.as_str(), flag, 1);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_spec_and_names_flags_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = SpecBuilder::new("heads", dir.path());
        b.set("analysis.heads.suite", "no-such-suite")
            .set("analysis.heads.limit", 5)
            .flag("analysis.heads.suite", "--suite");
        let text = b.text();
        assert!(text.contains("[analysis.heads]"), "{text}");
        assert!(text.contains("limit = 5"), "{text}");
        let e = b.validate(&dir.path().join("spec.toml")).unwrap_err();
        assert_eq!(e.field, "--suite");
        assert_eq!(e.value, "no-such-suite");
        assert!(e.file.is_none());
        assert!(e.to_string().starts_with("--suite = no-such-suite:"), "{e}");
        b.set("analysis.heads.suite", "fixture-harmful");
        let v = b.validate(&dir.path().join("spec.toml")).unwrap();
        let h = v.spec.analysis.heads.unwrap();
        assert_eq!(h.limit, 5);
        assert_eq!(v.suites[h.suite].name, "fixture-harmful");
        assert_eq!(v.suites[h.suite].prompts.len(), 5);
        // A model that is not there is named by its key.
        b.set(
            "model.path",
            dir.path().join("absent").display().to_string(),
        );
        let e = b.validate(&dir.path().join("spec.toml")).unwrap_err();
        assert_eq!(e.field, "model.path");
    }
}
