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
        (raw.suite.clone(), raw.file.as_deref().map(|f| resolve(dir, f)))
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
pub(super) fn section(raw: Option<&RawCalibration>, dir: &Path) -> Result<CalibrationSpec, FieldError> {
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
            "only calibrated methods (gptq, awq, smoothquant, fp8:static, sparsegpt, wanda) \
             read calibration data",
        )),
        (true, None) => Ok(Some(base.clone())),
        (true, Some(raw)) => {
            let c = overlay(base, raw, dir);
            check(&c, &at)?;
            Ok(Some(c))
        }
    }
}
