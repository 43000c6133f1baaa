//! Small text helpers shared by the parsers and renderers: cutting long values for messages,
//! turning a TOML error into a [`FieldError`] that names the key path, and timestamps.

use std::ops::Range;
use std::path::Path;

use crate::error::FieldError;

/// At most `max` characters of `s`, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// The TOML key path (`variants[2].method`) of the innermost key or value whose span holds
/// byte offset `at`. Table headers only span the header, so every node is visited.
pub fn toml_path(text: &str, at: usize) -> Option<String> {
    fn consider(s: Range<usize>, at: usize, path: &str, best: &mut Option<(usize, String)>) {
        if s.contains(&at) && best.as_ref().is_none_or(|(len, _)| s.len() <= *len) {
            *best = Some((s.len(), path.to_string()));
        }
    }
    fn walk(v: &toml::de::DeValue<'_>, at: usize, path: &str, best: &mut Option<(usize, String)>) {
        if let Some(t) = v.as_table() {
            for (k, val) in t.iter() {
                let p = if path.is_empty() {
                    k.get_ref().to_string()
                } else {
                    format!("{path}.{}", k.get_ref())
                };
                consider(k.span(), at, &p, best);
                consider(val.span(), at, &p, best);
                walk(val.get_ref(), at, &p, best);
            }
        } else if let Some(a) = v.as_array() {
            for (i, item) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                consider(item.span(), at, &p, best);
                walk(item.get_ref(), at, &p, best);
            }
        }
    }
    let doc = toml::de::DeTable::parse(text).ok()?;
    let root = toml::de::DeValue::Table(doc.into_inner());
    let mut best = None;
    walk(&root, at, "", &mut best);
    best.map(|(_, p)| p)
}

/// A TOML parse or shape error of `file` as a [`FieldError`]: the key path at the error's
/// position (else its line), the offending text (trimmed, at most 80 characters) and the
/// message. `whole` names the field when the error has no position (`(spec)`, `(gate)`).
pub fn toml_error(e: &toml::de::Error, text: &str, file: &Path, whole: &str) -> FieldError {
    let (field, value) = match e.span() {
        Some(span) => {
            let value = text
                .get(span.clone())
                .map(|v| truncate(v.trim(), 80))
                .unwrap_or_default();
            let field = toml_path(text, span.start).unwrap_or_else(|| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}")
            });
            (field, value)
        }
        None => (whole.to_string(), String::new()),
    };
    FieldError::new(field, value, e.message().trim().to_string()).in_file(file)
}

/// Current unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 UTC time of unix milliseconds `ms`, to the second.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
