//! Calibration data as a description: where the text comes from, how many sequences of how
//! many tokens, and the seed of the sample. A spec's `[calibration]` section and a variant's
//! `calibration` table are this type; the engine turns it into token sequences
//! (`compsafe_engine::calib::data`).
//!
//! The text is the prompts of a bundled suite (or of the default benign mix, or of a file
//! with one prompt per line), each rendered as a single-turn chat prompt with the model's
//! template, shuffled with `seed`, concatenated and cut into `sequences` windows of
//! `seq_len` tokens. The same description, model and files give the same sequences, in the
//! same order, on every machine.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// The bundled suites whose prompts make the default calibration text: benign requests of
/// JailbreakBench (MIT), XSTest's safe prompts (CC-BY-4.0) and TruthfulQA's questions
/// (Apache-2.0); see suites/README.md for their provenance. Harmful prompts are not in it.
pub const DEFAULT_MIX: [&str; 3] = ["jbb-benign", "xstest-safe", "truthfulqa-mc"];

/// Where calibration prompts come from, and how many tokens to take.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSpec {
    /// A bundled suite (its prompts, in file order before shuffling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// A UTF-8 text file with one prompt per line (blank lines skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Calibration sequences.
    #[serde(default = "default_sequences")]
    pub sequences: usize,
    /// Tokens per sequence.
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Seed of the shuffle.
    #[serde(default)]
    pub seed: u64,
}

fn default_sequences() -> usize {
    128
}

fn default_seq_len() -> usize {
    512
}

impl Default for CalibrationSpec {
    fn default() -> Self {
        CalibrationSpec {
            suite: None,
            file: None,
            sequences: default_sequences(),
            seq_len: default_seq_len(),
            seed: 0,
        }
    }
}

/// Where the prompts of a [`CalibrationSpec`] come from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalibSource {
    /// The bundled suites of [`DEFAULT_MIX`], in that order.
    DefaultMix,
    /// One bundled suite.
    Suite(String),
    /// A file of prompts, one per line.
    File(PathBuf),
}

impl CalibrationSpec {
    /// Checks the fields; errors name `field.<key>` (e.g. `calibration.seq_len`).
    pub fn check(&self, field: &str) -> Result<(), FieldError> {
        if self.suite.is_some() && self.file.is_some() {
            return Err(FieldError::new(
                format!("{field}.file"),
                self.file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                "give a suite or a file, not both",
            ));
        }
        if let Some(s) = &self.suite {
            if s.trim().is_empty() {
                return Err(FieldError::new(
                    format!("{field}.suite"),
                    s,
                    "name a bundled suite",
                ));
            }
        }
        if self.sequences == 0 {
            return Err(FieldError::new(
                format!("{field}.sequences"),
                "0",
                "must be at least 1",
            ));
        }
        if self.seq_len < 2 {
            return Err(FieldError::new(
                format!("{field}.seq_len"),
                self.seq_len.to_string(),
                "must be at least 2",
            ));
        }
        if self.sequences.saturating_mul(self.seq_len) > 1 << 26 {
            return Err(FieldError::new(
                format!("{field}.sequences"),
                self.sequences.to_string(),
                "sequences x seq_len is above 67,108,864 tokens",
            ));
        }
        Ok(())
    }

    /// The resolved source.
    pub fn source(&self) -> CalibSource {
        match (&self.suite, &self.file) {
            (Some(s), _) => CalibSource::Suite(s.clone()),
            (None, Some(f)) => CalibSource::File(f.clone()),
            (None, None) => CalibSource::DefaultMix,
        }
    }

    /// A variant's calibration settings: its own table's fields over the spec's section.
    /// Fields the override leaves at their defaults are taken from `base`; a suite or file in
    /// the override replaces both of `base`'s.
    pub fn overridden_by(&self, over: &CalibrationSpec) -> CalibrationSpec {
        let d = CalibrationSpec::default();
        let (suite, file) = if over.suite.is_some() || over.file.is_some() {
            (over.suite.clone(), over.file.clone())
        } else {
            (self.suite.clone(), self.file.clone())
        };
        CalibrationSpec {
            suite,
            file,
            sequences: if over.sequences != d.sequences {
                over.sequences
            } else {
                self.sequences
            },
            seq_len: if over.seq_len != d.seq_len {
                over.seq_len
            } else {
                self.seq_len
            },
            seed: if over.seed != d.seed {
                over.seed
            } else {
                self.seed
            },
        }
    }
}

impl fmt::Display for CalibrationSpec {
    /// What report entries say a variant was calibrated on, e.g.
    /// `suite fixture-harmful: 32 x 64 tokens, seed 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source() {
            CalibSource::DefaultMix => write!(f, "default mix ({})", DEFAULT_MIX.join(", "))?,
            CalibSource::Suite(s) => write!(f, "suite {s}")?,
            CalibSource::File(p) => write!(f, "file {}", p.display())?,
        }
        write!(
            f,
            ": {} x {} tokens, seed {}",
            self.sequences, self.seq_len, self.seed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_table_form() {
        let c: CalibrationSpec = toml::from_str("suite = \"advbench\"\nsequences = 32\n").unwrap();
        assert_eq!(c.seq_len, 512);
        assert_eq!(c.source(), CalibSource::Suite("advbench".into()));
        c.check("calibration").unwrap();
        assert_eq!(c.to_string(), "suite advbench: 32 x 512 tokens, seed 0");
        assert_eq!(CalibrationSpec::default().source(), CalibSource::DefaultMix);
        let e = toml::from_str::<CalibrationSpec>("suit = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("suit"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        for (text, field) in [
            ("sequences = 0", "calibration.sequences"),
            ("seq_len = 1", "calibration.seq_len"),
            ("suite = \"a\"\nfile = \"b.txt\"", "calibration.file"),
            ("suite = \" \"", "calibration.suite"),
        ] {
            let c: CalibrationSpec = toml::from_str(text).unwrap();
            let e = c.check("calibration").unwrap_err();
            assert_eq!(e.field, field, "{text}");
        }
    }

    #[test]
    fn overrides_take_precedence() {
        let base = CalibrationSpec {
            suite: Some("jbb-benign".into()),
            sequences: 64,
            seq_len: 128,
            ..CalibrationSpec::default()
        };
        let over = CalibrationSpec {
            suite: Some("advbench".into()),
            ..CalibrationSpec::default()
        };
        let c = base.overridden_by(&over);
        assert_eq!(c.suite.as_deref(), Some("advbench"));
        assert_eq!((c.sequences, c.seq_len), (64, 128));
        let c = base.overridden_by(&CalibrationSpec::default());
        assert_eq!(c, base);
    }
}
