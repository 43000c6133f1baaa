//! The date `strftime_now` renders: a calendar date (midnight, no time zone) formatted as
//! Python's `datetime.strftime` formats it with glibc in the C locale.

use std::fmt;

/// A calendar date, the one `strftime_now` reports (at 00:00:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChatDate {
    year: i32,
    month: u32,
    day: u32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

impl ChatDate {
    /// A date from its year, month (1-12) and day (1-31); `None` when no such day exists.
    pub fn new(year: i32, month: u32, day: u32) -> Option<ChatDate> {
        ((1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month))
        .then_some(ChatDate { year, month, day })
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<ChatDate> {
        let mut parts = text.trim().splitn(3, '-');
        let y = parts.next()?;
        let m = parts.next()?;
        let d = parts.next()?;
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        ChatDate::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
    }

    /// The UTC date of a Unix time in seconds.
    pub fn from_unix_seconds(secs: i64) -> ChatDate {
        // Civil-from-days (proleptic Gregorian), after H. Hinnant's public-domain algorithm.
        let z = secs.div_euclid(86_400) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        ChatDate { year, month, day }
    }

    /// Today's date in UTC.
    pub fn today_utc() -> ChatDate {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        ChatDate::from_unix_seconds(secs)
    }

    /// Year, month and day.
    pub fn ymd(&self) -> (i32, u32, u32) {
        (self.year, self.month, self.day)
    }

    /// Day of the year, 1-366.
    fn ordinal(&self) -> u32 {
        (1..self.month)
            .map(|m| days_in_month(self.year, m))
            .sum::<u32>()
            + self.day
    }

    /// Days since Monday, 0-6.
    fn weekday(&self) -> u32 {
        // Days from civil (Hinnant), 1970-01-01 was a Thursday (3 days after a Monday).
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        (days + 3).rem_euclid(7) as u32
    }

    /// Formats the date at midnight as Python's `strftime(format)` does (glibc, C locale).
    /// An unknown directive is an error naming it.
    pub fn strftime(&self, format: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let flag = match chars.peek() {
                Some(&f @ ('-' | '_' | '0' | '^')) => {
                    chars.next();
                    Some(f)
                }
                _ => None,
            };
            let Some(d) = chars.next() else {
                out.push('%');
                break;
            };
            let wd = self.weekday() as usize;
            let month = MONTHS[(self.month - 1) as usize];
            // (text, width of zero padding) for numbers; names are text with width 0.
            let num = |v: i64, w: usize| (v.to_string(), w);
            let (text, width) = match d {
                'a' => (WEEKDAYS[wd][..3].to_string(), 0),
                'A' => (WEEKDAYS[wd].to_string(), 0),
                'b' | 'h' => (month[..3].to_string(), 0),
                'B' => (month.to_string(), 0),
                'C' => num(i64::from(self.year) / 100, 2),
                'd' => num(i64::from(self.day), 2),
                'e' => (format!("{:>2}", self.day), 0),
                'm' => num(i64::from(self.month), 2),
                'y' => num(i64::from(self.year) % 100, 2),
                'Y' => num(i64::from(self.year), 0),
                'j' => num(i64::from(self.ordinal()), 3),
                'H' | 'M' | 'S' => num(0, 2),
                'I' => num(12, 2),
                'k' => (" 0".into(), 0),
                'l' => ("12".into(), 0),
                'p' => ("AM".into(), 0),
                'P' => ("am".into(), 0),
                'u' => num(wd as i64 + 1, 0),
                'w' => num((wd as i64 + 1) % 7, 0),
                'D' => (self.strftime("%m/%d/%y")?, 0),
                'x' => (self.strftime("%m/%d/%y")?, 0),
                'F' => (self.strftime("%Y-%m-%d")?, 0),
                'T' | 'X' => ("00:00:00".into(), 0),
                'R' => ("00:00".into(), 0),
                'r' => ("12:00:00 AM".into(), 0),
                'c' => (self.strftime("%a %b %e 00:00:00 %Y")?, 0),
                'z' | 'Z' => (String::new(), 0),
                'n' => ("\n".into(), 0),
                't' => ("\t".into(), 0),
                '%' => ("%".into(), 0),
                other => {
                    return Err(format!(
                        "strftime_now: directive %{other} in {format:?} is not supported"
                    ))
                }
            };
            let padded = match (flag, width) {
                (Some('-'), _) => text.trim_start().to_string(),
                (_, 0) => text,
                (Some('_'), w) => format!("{text:>w$}"),
                (_, w) => format!("{text:0>w$}"),
            };
            if flag == Some('^') {
                out.push_str(&padded.to_uppercase());
            } else {
                out.push_str(&padded);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for ChatDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_as_glibc_does() {
        let d = ChatDate::parse("2026-03-05").unwrap();
        assert_eq!(d.strftime("%d %b %Y").unwrap(), "05 Mar 2026");
        assert_eq!(
            d.strftime("%A %B %-d, %y (day %j, %a %p)").unwrap(),
            "Thursday March 5, 26 (day 064, Thu AM)"
        );
        assert_eq!(
            d.strftime("%Y-%m-%d %H:%M:%S").unwrap(),
            "2026-03-05 00:00:00"
        );
        assert_eq!(d.strftime("%e|%_m|%^b|%%").unwrap(), " 5| 3|MAR|%");
        assert!(d.strftime("%Q").unwrap_err().contains("%Q"));
        assert_eq!(
            ChatDate::parse("2024-07-26")
                .unwrap()
                .strftime("%a")
                .unwrap(),
            "Fri"
        );
        assert_eq!(
            ChatDate::parse("2000-02-29")
                .unwrap()
                .strftime("%j %a")
                .unwrap(),
            "060 Tue"
        );
        assert!(ChatDate::parse("2025-02-29").is_none());
    }

    #[test]
    fn unix_seconds_give_the_utc_date() {
        assert_eq!(ChatDate::from_unix_seconds(0).to_string(), "1970-01-01");
        assert_eq!(
            ChatDate::from_unix_seconds(1_772_668_800).to_string(),
            "2026-03-05"
        );
        assert_eq!(
            ChatDate::from_unix_seconds(951_782_399).to_string(),
            "2000-02-28"
        );
    }
}
