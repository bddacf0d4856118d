//! Points in time as `events --since/--until` take them and as events print them:
//! seconds since the epoch (`1733100000`, `1733100000.5`), a duration back from now
//! (`10m`, `1h30m`, `45s`), or an RFC 3339 time (`2026-12-02T10:00:00Z`, with an offset,
//! or a bare date). Dates are proleptic Gregorian, UTC.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `nanos` since the epoch as `2026-12-02T10:00:00.123456789Z`.
pub fn format_rfc3339(nanos: u64) -> String {
    let secs = (nanos / 1_000_000_000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        nanos % 1_000_000_000
    )
}

fn number<T: std::str::FromStr>(s: &str, what: &str, whole: &str) -> Result<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("{whole:?}: bad {what}");
    }
    s.parse().map_err(|_| anyhow!("{whole:?}: bad {what}"))
}

fn parse_duration(s: &str) -> Option<Result<u64>> {
    let units = |c: char| matches!(c, 's' | 'm' | 'h' | 'd');
    if !s.ends_with(units) || !s.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let scale = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Some(Err(anyhow!(
                    "{s:?}: bad duration (use e.g. 90s, 10m, 1h30m)"
                )))
            }
        };
        let Ok(n) = std::mem::take(&mut digits).parse::<u64>() else {
            return Some(Err(anyhow!(
                "{s:?}: bad duration (use e.g. 90s, 10m, 1h30m)"
            )));
        };
        total = total.saturating_add(n.saturating_mul(scale));
    }
    Some(Ok(total))
}

/// Seconds since the epoch for `s`, relative to `now` (seconds since the epoch).
pub fn parse_at(s: &str, now: u64) -> Result<u64> {
    let s = s.trim();
    if let Some(d) = parse_duration(s) {
        return Ok(now.saturating_sub(d?));
    }
    if let Some((whole, frac)) = s.split_once('.').filter(|_| !s.contains('-')) {
        let secs: u64 = number(whole, "seconds", s)?;
        number::<u64>(frac, "fraction", s)?;
        return Ok(secs);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        return number(s, "seconds", s);
    }
    parse_rfc3339(s)
}

fn parse_rfc3339(s: &str) -> Result<u64> {
    let bad = || {
        anyhow!("{s:?}: not a time (use seconds since the epoch, a duration such as 10m, or 2026-12-02T10:00:00Z)")
    };
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let mut parts = date.splitn(3, '-');
    let (Some(y), Some(mo), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (y, mo, d): (i64, u32, u32) = (
        number(y, "year", s)?,
        number(mo, "month", s)?,
        number(d, "day", s)?,
    );
    if !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || civil_from_days(days_from_civil(y, mo, d)) != (y, mo, d)
    {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    if !rest.is_empty() {
        let (clock, offset) = match rest.find(['Z', 'z', '+', '-']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let clock = clock.split('.').next().unwrap_or(clock);
        let mut hms = clock.split(':');
        let h: i64 = number(hms.next().unwrap_or(""), "hour", s)?;
        let m: i64 = number(hms.next().unwrap_or(""), "minute", s)?;
        let sec: i64 = match hms.next() {
            Some(x) => number(x, "second", s)?,
            None => 0,
        };
        if h > 23 || m > 59 || sec > 60 || hms.next().is_some() {
            return Err(bad());
        }
        secs += h * 3600 + m * 60 + sec;
        match offset.as_bytes().first() {
            None | Some(b'Z' | b'z') if offset.len() <= 1 => {}
            Some(sign @ (b'+' | b'-')) => {
                let (oh, om) = offset[1..].split_once(':').ok_or_else(bad)?;
                let off =
                    number::<i64>(oh, "offset", s)? * 3600 + number::<i64>(om, "offset", s)? * 60;
                secs += if *sign == b'+' { -off } else { off };
            }
            _ => return Err(bad()),
        }
    }
    u64::try_from(secs).map_err(|_| anyhow!("{s:?}: before 1970"))
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form() {
        let now = 1_800_000_000;
        assert_eq!(parse_at("1733100000", now).unwrap(), 1_733_100_000);
        assert_eq!(parse_at("1733100000.25", now).unwrap(), 1_733_100_000);
        assert_eq!(parse_at("10m", now).unwrap(), now - 600);
        assert_eq!(parse_at("1h30m", now).unwrap(), now - 5400);
        assert_eq!(parse_at("1970-01-02", now).unwrap(), 86_400);
        assert_eq!(
            parse_at("2024-12-02T00:40:00Z", now).unwrap(),
            1_733_100_000
        );
        assert_eq!(
            parse_at("2024-12-02T01:40:00+01:00", now).unwrap(),
            1_733_100_000
        );
        assert_eq!(
            parse_at("2024-12-01T23:40:00.5-01:00", now).unwrap(),
            1_733_100_000
        );
        assert_eq!(
            format_rfc3339(1_733_100_000_000_000_007),
            "2024-12-02T00:40:00.000000007Z"
        );
        assert_eq!(
            format_rfc3339(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn refusals_name_the_input() {
        for bad in [
            "",
            "soon",
            "10x",
            "2024-02-30",
            "2024-13-01",
            "2024-12-02T25:00:00Z",
            "1.5.6",
            "-5",
            "2024-12-02T00:00:00+0100",
            "m",
        ] {
            let e = parse_at(bad, 0).expect_err(bad).to_string();
            assert!(
                e.contains(&format!("{bad:?}")) || bad.is_empty(),
                "{bad}: {e}"
            );
        }
    }
}
