//! `--health-*` flags of `run` and `create`, as Docker's (and Podman's
//! `--health-on-failure`).

use container_protocol::container::{HealthAction, HealthFlags};

#[derive(clap::Args, Debug, Default, Clone)]
pub struct HealthArgs {
    /// Command run inside the container to check its health (by `/bin/sh -c`).
    #[arg(long = "health-cmd", value_name = "COMMAND")]
    pub cmd: Option<String>,
    /// Time between checks (e.g. 30s, 1m30s, 500ms; default 30s).
    #[arg(long = "health-interval", value_parser = parse_duration_ms, value_name = "DURATION")]
    pub interval: Option<u64>,
    /// Longest a check may take (default 30s).
    #[arg(long = "health-timeout", value_parser = parse_duration_ms, value_name = "DURATION")]
    pub timeout: Option<u64>,
    /// Failures in a row that make the container unhealthy (default 3).
    #[arg(long = "health-retries", value_name = "N")]
    pub retries: Option<u32>,
    /// Time after the start in which failures do not count (default 0s).
    #[arg(long = "health-start-period", value_parser = parse_duration_ms, value_name = "DURATION")]
    pub start_period: Option<u64>,
    /// What an unhealthy container gets: none, kill, restart.
    #[arg(long = "health-on-failure", default_value = "none", value_parser = parse_action)]
    pub on_failure: HealthAction,
    /// No health check, not even the image's HEALTHCHECK.
    #[arg(long = "no-healthcheck")]
    pub none: bool,
}

impl HealthArgs {
    pub fn flags(&self) -> HealthFlags {
        HealthFlags {
            test: self
                .cmd
                .as_ref()
                .map(|c| vec!["/bin/sh".into(), "-c".into(), c.clone()]),
            interval_ms: self.interval,
            timeout_ms: self.timeout,
            start_period_ms: self.start_period,
            retries: self.retries,
            on_failure: self.on_failure,
            disabled: self.none,
        }
    }
}

fn parse_action(s: &str) -> Result<HealthAction, String> {
    match s {
        "none" => Ok(HealthAction::None),
        "kill" => Ok(HealthAction::Kill),
        "restart" => Ok(HealthAction::Restart),
        other => Err(format!("{other:?} is not an action (none, kill, restart)")),
    }
}

/// `1h2m3s`, `500ms`, `30s`, or a bare number of seconds, as Go's durations Docker
/// takes; milliseconds out. Zero is taken here and refused by the apiserver, which
/// names the flag.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 30s, 1m30s, 500ms)");
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(|n| n.saturating_mul(1000))
            .map_err(|_| bad());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (scale, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return Err(bad());
        };
        rest = &rest[len..];
        total = total.saturating_add(n.saturating_mul(scale));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms as d;

    #[test]
    fn durations_as_docker_takes_them() {
        assert_eq!(d("30s"), Ok(30_000));
        assert_eq!(d("1m30s"), Ok(90_000));
        assert_eq!(d("500ms"), Ok(500));
        assert_eq!(d("2h"), Ok(7_200_000));
        assert_eq!(d("5"), Ok(5000));
        assert_eq!(d("0"), Ok(0));
        for bad in ["", "s", "10x", "1.5s", "-1s", "1m30"] {
            assert!(d(bad).unwrap_err().contains(&format!("{bad:?}")), "{bad}");
        }
    }
}
