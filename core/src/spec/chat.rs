//! `[chat]`: how chat templates render in this sweep. `date` pins what a template's
//! `strftime_now` returns (Llama 3.x templates stamp `Today Date:` with it), so the sweep
//! renders the same prompts every time; without it the sweep's start date is used.
//!
//! ```toml
//! [chat]
//! date = "2024-07-26"    # or a TOML date: date = 2024-07-26
//! ```

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// `[chat]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSection {
    /// The date `strftime_now` renders (`YYYY-MM-DD`); `None`: the sweep's start date.
    pub date: Option<String>,
}

impl ChatSection {
    /// The date templates render in a sweep started at `started_at` (RFC 3339): the spec's,
    /// else the start date's `YYYY-MM-DD`.
    pub fn date_for(&self, started_at: &str) -> Option<String> {
        self.date.clone().or_else(|| {
            let day = started_at.get(..10)?;
            parse_date(day).map(|_| day.to_string())
        })
    }
}

/// `[chat]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChat {
    pub(super) date: Option<toml::Value>,
}

/// A proleptic Gregorian `YYYY-MM-DD` date (year 1 to 9999).
pub fn parse_date(text: &str) -> Option<(i32, u32, u32)> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(y) && digits(m) && digits(d)) {
        return None;
    }
    let (y, m, d): (i32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (y >= 1 && (1..=days).contains(&d)).then_some((y, m, d))
}

pub(super) fn parse_chat(raw: &RawChat) -> Result<ChatSection, FieldError> {
    let date = match &raw.date {
        None => None,
        Some(v) => {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Datetime(d) => d.to_string(),
                other => other.to_string(),
            };
            if parse_date(&text).is_none() {
                return Err(FieldError::new(
                    "chat.date",
                    text,
                    "not a date: write the day templates' strftime_now renders as YYYY-MM-DD",
                ));
            }
            Some(text)
        }
    };
    Ok(ChatSection { date })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked_by_the_calendar() {
        assert_eq!(parse_date("2024-02-29"), Some((2024, 2, 29)));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2025-13-01"), None);
        assert_eq!(parse_date("2025-1-01"), None);
        assert_eq!(parse_date("26 Jul 2024"), None);
        assert_eq!(parse_date("2024-07-26T00:00:00Z"), None);
    }

    #[test]
    fn the_start_date_is_the_default() {
        let c = ChatSection::default();
        assert_eq!(
            c.date_for("2026-12-03T12:52:04Z").as_deref(),
            Some("2026-12-03")
        );
        let c = ChatSection {
            date: Some("2024-07-26".into()),
        };
        assert_eq!(
            c.date_for("2026-12-03T12:52:04Z").as_deref(),
            Some("2024-07-26")
        );
    }
}
