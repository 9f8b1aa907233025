//! Times on the command line: relative (`7d`, `2h`, `90m` ago) or absolute
//! RFC 3339 (`2026-11-22T10:00:00Z`), all in UTC epoch milliseconds.

use ::time::format_description::well_known::Rfc3339;
use ::time::OffsetDateTime;

/// Now, in epoch milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Parses `7d` / `2h` / `30m` / `1w` (that long before `now_ms`), or an
/// RFC 3339 timestamp, or a date `YYYY-MM-DD` (its midnight UTC).
pub fn parse_time(s: &str, now_ms: u64) -> Result<u64, String> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms.saturating_sub(d.as_millis() as u64));
    }
    let with_time;
    let text = if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
        with_time = format!("{s}T00:00:00Z");
        &with_time
    } else {
        s
    };
    match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(t) => {
            let ms = t.unix_timestamp_nanos() / 1_000_000;
            u64::try_from(ms).map_err(|_| format!("`{s}` is before 1970"))
        }
        Err(_) => Err(format!(
            "`{s}` is neither a duration ago (7d, 2h, 30m) nor an RFC 3339 time (2026-11-22T10:00:00Z)"
        )),
    }
}

/// `ms` as RFC 3339 UTC with milliseconds.
pub fn format_ms(ms: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&::time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_000_000_000;

    #[test]
    fn relative_and_absolute_times_parse() {
        assert_eq!(parse_time("2h", NOW), Ok(NOW - 2 * 3600 * 1000));
        assert_eq!(parse_time("7d", NOW), Ok(NOW - 7 * 86400 * 1000));
        assert_eq!(
            parse_time("2026-11-22T10:00:00Z", NOW),
            Ok(1_795_341_600_000)
        );
        assert_eq!(
            parse_time("2026-11-22T11:00:00+01:00", NOW),
            Ok(1_795_341_600_000)
        );
        assert_eq!(parse_time("2026-11-22", NOW), Ok(1_795_305_600_000));
        assert!(parse_time("yesterday-ish", NOW).is_err());
        assert_eq!(format_ms(1_795_341_600_123), "2026-11-22T10:00:00.123Z");
    }
}
