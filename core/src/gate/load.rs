//! Reading gate files and the reports a gate compares.

use std::path::Path;

use super::Gate;
use crate::error::FieldError;
use crate::report::{Report, SCHEMA};

fn check_fraction(field: &str, v: f64, open_zero: bool) -> Result<(), FieldError> {
    let ok = v.is_finite() && v <= 1.0 && if open_zero { v > 0.0 } else { v >= 0.0 };
    if ok {
        Ok(())
    } else {
        let range = if open_zero { "(0, 1]" } else { "[0, 1]" };
        Err(FieldError::new(
            field,
            v.to_string(),
            format!("must be a fraction in {range}"),
        ))
    }
}

fn check_patterns(field: &str, pats: &Option<Vec<String>>) -> Result<(), FieldError> {
    let Some(pats) = pats else { return Ok(()) };
    if pats.is_empty() {
        return Err(FieldError::new(
            field,
            "[]",
            "an empty filter matches nothing; remove the field to gate everything",
        ));
    }
    for (i, p) in pats.iter().enumerate() {
        if p.trim().is_empty() {
            return Err(FieldError::new(
                format!("{field}[{i}]"),
                p.clone(),
                "empty pattern",
            ));
        }
    }
    Ok(())
}

impl Gate {
    /// Checks ranges and that at least one rule is enabled.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(m) = self.max_refusal_drop {
            check_fraction("max_refusal_drop", m, false)?;
        }
        if let Some(m) = self.max_over_refusal_increase {
            check_fraction("max_over_refusal_increase", m, false)?;
        }
        if let Some(h) = &self.hidden_danger {
            check_fraction(
                "hidden_danger.accuracy_tolerance",
                h.accuracy_tolerance,
                false,
            )?;
            check_fraction("hidden_danger.alpha", h.alpha, true)?;
        }
        check_patterns("variants", &self.variants)?;
        check_patterns("suites", &self.suites)?;
        if self.max_refusal_drop.is_none()
            && self.max_flips.is_none()
            && self.max_over_refusal_increase.is_none()
            && self.hidden_danger.is_none()
        {
            return Err(FieldError::new(
                "(gate)",
                "",
                "the gate enables no rule; set max_refusal_drop, max_flips, \
                 max_over_refusal_increase or [hidden_danger]",
            ));
        }
        Ok(())
    }
}

/// Parses gate TOML; `file` is named in errors.
pub fn parse_gate(text: &str, file: &Path) -> Result<Gate, FieldError> {
    let gate: Gate =
        toml::from_str(text).map_err(|e| crate::text::toml_error(&e, text, file, "(gate)"))?;
    gate.validate().map_err(|e| e.in_file(file))?;
    Ok(gate)
}

/// Reads and parses a gate file (see the module docs for the format).
pub fn load_gate(path: &Path) -> Result<Gate, FieldError> {
    let text = crate::suite::read_text(path)?;
    parse_gate(&text, path)
}

/// Extracts the first back-quoted name of a serde message (`missing field `n``).
fn quoted(msg: &str) -> Option<&str> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(&msg[start..start + len])
}

fn check_rate(field: String, v: Option<f64>) -> Result<(), FieldError> {
    match v {
        Some(x) if !(x.is_finite() && (0.0..=1.0).contains(&x)) => Err(FieldError::new(
            field,
            x.to_string(),
            "a rate must lie in [0, 1]",
        )),
        _ => Ok(()),
    }
}

fn check_interval(field: String, v: Option<[f64; 2]>) -> Result<(), FieldError> {
    match v {
        Some([lo, hi]) if !(lo.is_finite() && hi.is_finite() && lo <= hi) => Err(FieldError::new(
            field,
            format!("[{lo}, {hi}]"),
            "an interval needs lo <= hi",
        )),
        _ => Ok(()),
    }
}

/// Parses report.json text: the schema must be [`SCHEMA`], the fields must match the
/// contract, rates must lie in [0, 1] and intervals must be ordered.
pub fn parse_report(text: &str, file: &Path) -> Result<Report, FieldError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        FieldError::new(
            format!("line {}", e.line()),
            "",
            format!("not valid JSON: {e}"),
        )
        .in_file(file)
    })?;
    match value.get("schema") {
        Some(serde_json::Value::String(s)) if s == SCHEMA => {}
        Some(other) => {
            let shown = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string);
            return Err(FieldError::new(
                "schema",
                shown,
                format!("expected {SCHEMA:?}; this is not a compsafe report of this version"),
            )
            .in_file(file));
        }
        None => {
            return Err(
                FieldError::new("schema", "", format!("missing; expected {SCHEMA:?}"))
                    .in_file(file),
            )
        }
    }
    let report: Report = serde_json::from_value(value).map_err(|e| {
        let msg = e.to_string();
        FieldError::new(
            quoted(&msg).unwrap_or("(report)"),
            "",
            format!("does not match the report schema: {msg}"),
        )
        .in_file(file)
    })?;
    for (i, c) in report.cells.iter().enumerate() {
        let f = |name: &str| format!("cells[{i}].{name}");
        let check = || -> Result<(), FieldError> {
            check_rate(f("refusal_rate"), c.refusal_rate)?;
            check_rate(f("compliance_rate"), c.compliance_rate)?;
            check_rate(f("degenerate_rate"), c.degenerate_rate)?;
            check_rate(f("asr"), c.asr)?;
            check_rate(f("accuracy"), c.accuracy)?;
            check_interval(f("refusal_ci95"), c.refusal_ci95)?;
            check_interval(f("asr_ci95"), c.asr_ci95)?;
            check_interval(f("accuracy_ci95"), c.accuracy_ci95)?;
            if let Some(v) = &c.vs_reference {
                check_interval(f("vs_reference.delta_ci95"), Some(v.delta_ci95))?;
                check_rate(f("vs_reference.mcnemar_p"), v.mcnemar_p)?;
                check_rate(f("vs_reference.mcnemar_p_holm"), v.mcnemar_p_holm)?;
            }
            Ok(())
        };
        check().map_err(|e| e.in_file(file))?;
    }
    Ok(report)
}

/// Reads and parses a report.json (see [`parse_report`]).
pub fn load_report(path: &Path) -> Result<Report, FieldError> {
    let text = crate::suite::read_text(path)?;
    parse_report(&text, path)
}
