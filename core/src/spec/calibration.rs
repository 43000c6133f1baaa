//! `[calibration]` and a variant's `calibration` table: the calibration data of every
//! variant whose method reads activations (see [`crate::calibration`]).

use std::path::Path;

use super::raw::RawCalibration;
use super::resolve;
use crate::calibration::CalibrationSpec;
use crate::error::FieldError;
use crate::suite;

/// `base` with the fields `raw` writes replaced; a suite or file in `raw` replaces both of
/// `base`'s. A file is resolved against the spec's directory.
fn overlay(base: &CalibrationSpec, raw: &RawCalibration, dir: &Path) -> CalibrationSpec {
    let (suite, file) = if raw.suite.is_some() || raw.file.is_some() {
        (
            raw.suite.clone(),
            raw.file.as_deref().map(|f| resolve(dir, f)),
        )
    } else {
        (base.suite.clone(), base.file.clone())
    };
    CalibrationSpec {
        suite,
        file,
        sequences: raw.sequences.unwrap_or(base.sequences),
        seq_len: raw.seq_len.unwrap_or(base.seq_len),
        seed: raw.seed.unwrap_or(base.seed),
    }
}

/// Checks the values and that a named suite is bundled; errors name `field.<key>`.
fn check(c: &CalibrationSpec, field: &str) -> Result<(), FieldError> {
    c.check(field)?;
    if let Some(name) = &c.suite {
        suite::bundled_source(&suite::bundled_root(), name)
            .map_err(|e| FieldError::new(format!("{field}.suite"), name, e.reason))?;
    }
    Ok(())
}

/// The spec's `[calibration]` section (defaults where absent), checked.
pub(super) fn section(
    raw: Option<&RawCalibration>,
    dir: &Path,
) -> Result<CalibrationSpec, FieldError> {
    let base = CalibrationSpec::default();
    let Some(raw) = raw else { return Ok(base) };
    let c = overlay(&base, raw, dir);
    check(&c, "calibration")?;
    Ok(c)
}

/// A variant's calibration: `None` when its method reads no activations (a `calibration`
/// table on it is then an error naming `field.calibration`), else the section overlaid with
/// the variant's own table.
pub(super) fn for_variant(
    base: &CalibrationSpec,
    own: Option<&RawCalibration>,
    needs: bool,
    method: &str,
    field: &str,
    dir: &Path,
) -> Result<Option<CalibrationSpec>, FieldError> {
    let at = format!("{field}.calibration");
    match (needs, own) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(FieldError::new(
            at,
            method,
            "only calibrated methods (gptq, awq, smoothquant, fp8:static, sparsegpt, wanda, \
             and any variant with kv:fp8 or kv:int8) read calibration data",
        )),
        (true, None) => Ok(Some(base.clone())),
        (true, Some(raw)) => {
            let c = overlay(base, raw, dir);
            check(&c, &at)?;
            Ok(Some(c))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::spec::parse_spec;

    fn spec(variants: &str, section: &str) -> String {
        format!(
            "variants = [{variants}]\n[sweep]\nname = \"c\"\n[model]\npath = \"m\"\n\
             [[suites]]\nname = \"xstest-safe\"\n{section}"
        )
    }

    fn error(text: &str) -> crate::FieldError {
        parse_spec(text, Path::new("/s/spec.toml")).unwrap_err()
    }

    #[test]
    fn section_and_overrides_resolve_per_variant() {
        let text = spec(
            r#""gptq:w4g128", "int8", { name = "harm", method = "gptq:w4g128", calibration = { suite = "advbench", seed = 3 } },
               { name = "file", method = "wanda:2of4", calibration = { file = "calib.txt", seq_len = 32 } }"#,
            "[calibration]\nsuite = \"jbb-benign\"\nsequences = 16\nseq_len = 64\n",
        );
        let s = parse_spec(&text, Path::new("/s/spec.toml")).unwrap();
        assert_eq!(s.calibration.suite.as_deref(), Some("jbb-benign"));
        let cal = |name: &str| {
            s.variants
                .iter()
                .find(|v| v.variant.name == name)
                .unwrap()
                .variant
                .calibration
                .clone()
        };
        assert_eq!(
            cal("gptq:w4g128").unwrap().to_string(),
            "suite jbb-benign: 16 x 64 tokens, seed 0"
        );
        assert_eq!(cal("int8"), None);
        assert_eq!(
            cal("harm").unwrap().to_string(),
            "suite advbench: 16 x 64 tokens, seed 3"
        );
        let f = cal("file").unwrap();
        assert_eq!(f.suite, None);
        assert_eq!(f.file.as_deref(), Some(Path::new("/s/calib.txt")));
        assert_eq!((f.sequences, f.seq_len), (16, 32));
        // Without a section: the defaults (the benign mix, 128 x 512).
        let s = parse_spec(&spec("\"awq:w4g128\"", ""), Path::new("/s/spec.toml")).unwrap();
        assert_eq!(
            s.variants[1]
                .variant
                .calibration
                .as_ref()
                .unwrap()
                .to_string(),
            "default mix (jbb-benign, xstest-safe, truthfulqa-mc): 128 x 512 tokens, seed 0"
        );
    }

    #[test]
    fn bad_calibration_names_field_and_value() {
        for (variants, section, field, value) in [
            (
                "\"gptq:w4g128\"",
                "[calibration]\nsuite = \"no-such-suite\"\n",
                "calibration.suite",
                "no-such-suite",
            ),
            (
                "\"gptq:w4g128\"",
                "[calibration]\nsequences = 0\n",
                "calibration.sequences",
                "0",
            ),
            (
                "\"gptq:w4g128\"",
                "[calibration]\nseq_len = 1\n",
                "calibration.seq_len",
                "1",
            ),
            (
                "{ name = \"g\", method = \"gptq:w4g128\", calibration = { suite = \"nope\" } }",
                "",
                "variants[0].calibration.suite",
                "nope",
            ),
            (
                "{ name = \"i\", method = \"int8\", calibration = { suite = \"advbench\" } }",
                "",
                "variants[0].calibration",
                "int8",
            ),
        ] {
            let e = error(&spec(variants, section));
            assert_eq!((e.field.as_str(), e.value.as_str()), (field, value), "{e}");
        }
        let e = error(&spec("\"gptq:w4g128\"", "[calibration]\nsequence = 4\n"));
        assert!(e.to_string().contains("sequence"), "{e}");
    }
}
