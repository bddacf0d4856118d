//! The flags of issue 10's resources (`run`, `create`): cgroup limits, devices,
//! ulimits, the user namespace. Every value is read here, as text, so a bad one is
//! one clear line and exit 125 like any other refused configuration (clap's own
//! parse errors exit 2); the apiserver checks the ranges again.

use anyhow::{anyhow, Result};
use clap::Args;
use container_protocol::resources::{
    parse_cpus, DeviceMapping, ResourceConfig, Ulimit, UsernsMode,
};

#[derive(Args, Clone, Default)]
pub struct ResourceArgs {
    /// Memory limit (bytes, or 512m, 1g; at least 6m).
    #[arg(short = 'm', long = "memory", value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory plus swap (SIZE, or -1 for unlimited swap; default: twice --memory).
    #[arg(long = "memory-swap", value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPUs the container may use (1.5: one and a half CPUs' time).
    #[arg(long = "cpus", value_name = "N", allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// Relative CPU weight (2 to 262144; the kernel's default is 1024).
    #[arg(
        short = 'c',
        long = "cpu-shares",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub cpu_shares: Option<String>,
    /// At most N tasks (default 2048; 0 or -1: no limit).
    #[arg(long = "pids-limit", value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// OOM-killer preference, -1000 (never) to 1000.
    #[arg(long = "oom-score-adj", value_name = "N", allow_hyphen_values = true)]
    pub oom_score_adj: Option<String>,
    /// A resource limit NAME=SOFT[:HARD] (nofile, nproc, core, memlock, …; repeatable).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Give a host device: HOST[:CONTAINER][:rwm] (repeatable).
    #[arg(long = "device", value_name = "HOST[:CONTAINER][:rwm]")]
    pub devices: Vec<String>,
    /// User namespace: host (the host's ids), or auto (ids of its own).
    #[arg(long = "userns", value_name = "MODE")]
    pub userns: Option<String>,
}

/// `10`, `10b`, `64k`, `512m`, `1g`: bytes, units of 1024 (Docker's).
fn parse_bytes(flag: &str, text: &str) -> Result<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, unit) = match digits.char_indices().last() {
        Some((i, 'k')) => (&digits[..i], 1u64 << 10),
        Some((i, 'm')) => (&digits[..i], 1 << 20),
        Some((i, 'g')) => (&digits[..i], 1 << 30),
        Some((i, 't')) => (&digits[..i], 1 << 40),
        _ => (digits, 1),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| anyhow!("invalid --{flag} {text:?}: expected a size (bytes, or 512m, 1g)"))
}

fn parse_int<T: std::str::FromStr>(flag: &str, text: &str, expected: &str) -> Result<T> {
    text.trim()
        .parse()
        .map_err(|_| anyhow!("invalid --{flag} {text:?}: expected {expected}"))
}

/// The configuration the flags ask for (nothing given: the defaults, filled in by the
/// apiserver).
pub fn build(a: &ResourceArgs) -> Result<(ResourceConfig, Option<UsernsMode>)> {
    let mut r = ResourceConfig::default();
    if let Some(m) = &a.memory {
        r.memory = Some(parse_bytes("memory", m)?);
    }
    if let Some(s) = &a.memory_swap {
        r.memory_swap = Some(if s.trim() == "-1" {
            -1
        } else {
            let bytes = parse_bytes("memory-swap", s)?;
            i64::try_from(bytes).map_err(|_| anyhow!("invalid --memory-swap {s:?}: too large"))?
        });
    }
    if let Some(c) = &a.cpus {
        r.nano_cpus = Some(parse_cpus(c).map_err(anyhow::Error::msg)?);
    }
    if let Some(c) = &a.cpu_shares {
        r.cpu_shares = Some(parse_int("cpu-shares", c, "a weight from 2 to 262144")?);
    }
    if let Some(p) = &a.pids_limit {
        r.pids_limit = Some(parse_int(
            "pids-limit",
            p,
            "a number of tasks (0 or -1: no limit)",
        )?);
    }
    if let Some(o) = &a.oom_score_adj {
        r.oom_score_adj = Some(parse_int(
            "oom-score-adj",
            o,
            "a number from -1000 to 1000",
        )?);
    }
    for u in &a.ulimits {
        r.ulimits
            .push(Ulimit::parse(u).map_err(anyhow::Error::msg)?);
    }
    for d in &a.devices {
        r.devices
            .push(DeviceMapping::parse(d).map_err(anyhow::Error::msg)?);
    }
    let userns = a
        .userns
        .as_deref()
        .map(UsernsMode::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    Ok((r, userns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        let bad = |f: fn(&mut ResourceArgs)| {
            let mut a = ResourceArgs::default();
            f(&mut a);
            build(&a).unwrap_err().to_string()
        };
        assert!(bad(|a| a.pids_limit = Some("abc".into())).contains("--pids-limit \"abc\""));
        assert!(bad(|a| a.cpus = Some("-1".into())).contains("--cpus \"-1\""));
        assert!(bad(|a| a.memory = Some("lots".into())).contains("--memory \"lots\""));
        assert!(bad(|a| a.userns = Some("keep-id".into())).contains("keep-id"));
        let mut a = ResourceArgs {
            memory: Some("512m".into()),
            memory_swap: Some("-1".into()),
            ..Default::default()
        };
        a.ulimits.push("nofile=10:20".into());
        let (r, _) = build(&a).unwrap();
        assert_eq!(r.memory, Some(512 << 20));
        assert_eq!(r.memory_swap, Some(-1));
        assert_eq!(parse_bytes("memory", "10").unwrap(), 10);
    }
}
