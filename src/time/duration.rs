//! Durations as workflows write them: integer seconds (the seed's form) or `500ms`, `30s`, `5m`,
//! `1h`, `2h30m`, `1d`.

use std::time::Duration;

/// Parses `30s`, `5m`, `2h30m`, `1d`, `250ms` or a bare number of seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{s}` has a number without a unit (use ms, s, m, h or d)"))?;
        if digits == 0 {
            return Err(format!(
                "`{s}` is not a duration (expected e.g. 30s, 5m, 1h, 2h30m)"
            ));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{}` is not a number", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ms" => number / 1000.0,
            "s" | "sec" | "secs" => number,
            "m" | "min" | "mins" => number * 60.0,
            "h" | "hr" | "hrs" => number * 3600.0,
            "d" => number * 86400.0,
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{s}` (expected ms, s, m, h or d)"
                ));
            }
        };
        total += Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is out of range"))?;
    }
    Ok(total)
}

/// The shortest readable form: `1h30m`, `45s`, `250ms`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if !ms.is_multiple_of(1000) && ms < 60_000 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        assert_eq!(parse("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h30m"), Ok(Duration::from_secs(9000)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse("5x").is_err());
        assert!(parse("m").is_err());
        assert!(parse("").is_err());
        assert!(parse("5m3").is_err());
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
    }
}
