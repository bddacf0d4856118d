//! The `CNI_*` environment (SPEC.md, "Parameters"), checked per command before stdin
//! is acted on: a missing or malformed variable is error 4 and nothing is touched.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::error::{CniError, INVALID_ENV};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Version,
    Gc,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            _ => return None,
        })
    }
}

#[derive(Debug, Default, Clone)]
pub struct Args {
    /// `IP=` (host-local's static request), comma-separated.
    pub ips: Vec<IpAddr>,
    /// `MAC=` for the container's end.
    pub mac: Option<[u8; 6]>,
}

#[derive(Debug, Clone)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// `None` when DEL is given none (the netns is gone).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: Args,
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Keys of `CNI_ARGS` runtimes send that this plugin has no use for but must not refuse.
const IGNORED_ARGS: &[&str] = &[
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

fn parse_args(text: &str) -> Result<Args, CniError> {
    let bad = |what: String| CniError::new(INVALID_ENV, format!("CNI_ARGS: {what}"));
    let mut pairs = Vec::new();
    for item in text.split(';').filter(|s| !s.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(bad(format!("{item:?} is not KEY=VALUE")));
        };
        pairs.push((k, v));
    }
    let ignore_unknown = pairs.iter().any(|(k, v)| {
        *k == "IgnoreUnknown" && matches!(v.to_ascii_lowercase().as_str(), "1" | "true")
    });
    let mut args = Args::default();
    for (k, v) in pairs {
        match k {
            "IgnoreUnknown" => {}
            "IP" => {
                for ip in v.split(',') {
                    let ip = ip.split('/').next().unwrap_or(ip);
                    args.ips.push(
                        ip.parse()
                            .map_err(|_| bad(format!("IP={v}: {ip:?} is not an address")))?,
                    );
                }
            }
            "MAC" => {
                args.mac = Some(parse_mac(v).ok_or_else(|| bad(format!("MAC={v} is not a MAC")))?)
            }
            k if IGNORED_ARGS.contains(&k) || ignore_unknown => {}
            k => {
                return Err(bad(format!(
                    "unknown key {k:?} (add IgnoreUnknown=1 to pass keys for other plugins)"
                )))
            }
        }
    }
    Ok(args)
}

/// Reads the environment through `get`, requiring what `command` needs.
pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
    let get = |k: &str| get(k).filter(|v| !v.is_empty());
    let missing = |k: &str, command: &str| {
        CniError::new(
            INVALID_ENV,
            format!("{k} is required for {command} and is not set"),
        )
    };
    let Some(name) = get("CNI_COMMAND") else {
        return Err(CniError::new(INVALID_ENV, "CNI_COMMAND is not set"));
    };
    let command = Command::parse(&name).ok_or_else(|| {
        CniError::new(
            INVALID_ENV,
            format!("CNI_COMMAND {name:?} is unknown: ADD, DEL, CHECK, STATUS, VERSION or GC"),
        )
    })?;
    let mut env = Env {
        command,
        container_id: String::new(),
        netns: None,
        ifname: String::new(),
        args: Args::default(),
    };
    if matches!(command, Command::Version) {
        return Ok(env);
    }
    if get("CNI_PATH").is_none() {
        return Err(missing("CNI_PATH", &name));
    }
    if matches!(command, Command::Status | Command::Gc) {
        return Ok(env);
    }
    env.container_id = get("CNI_CONTAINERID").ok_or_else(|| missing("CNI_CONTAINERID", &name))?;
    container_ipam::validate_container_id(&env.container_id).map_err(|e| {
        CniError::new(INVALID_ENV, "CNI_CONTAINERID is not a valid container id")
            .details(e.to_string())
    })?;
    env.ifname = get("CNI_IFNAME").ok_or_else(|| missing("CNI_IFNAME", &name))?;
    container_netlink::valid_ifname(&env.ifname).map_err(|e| {
        CniError::new(INVALID_ENV, "CNI_IFNAME is not a valid interface name")
            .details(e.to_string())
    })?;
    env.netns = get("CNI_NETNS").map(PathBuf::from);
    if env.netns.is_none() && command != Command::Del {
        return Err(missing("CNI_NETNS", &name));
    }
    if let Some(text) = get("CNI_ARGS") {
        env.args = parse_args(&text)?;
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::INVALID_ENV;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        read(|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    #[test]
    fn each_command_requires_its_variables() {
        assert!(env(ADD).is_ok());
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")]).is_ok());
        assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap_err().code, INVALID_ENV);
        for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"] {
            let pairs: Vec<_> = ADD.iter().copied().filter(|(k, _)| *k != missing).collect();
            let e = env(&pairs).unwrap_err();
            assert_eq!(e.code, INVALID_ENV);
            assert!(e.msg.contains(missing), "{e:?}");
        }
        let mut del: Vec<_> = ADD
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        del[0] = ("CNI_COMMAND", "DEL");
        assert!(env(&del).unwrap().netns.is_none());
    }

    #[test]
    fn args_are_read_or_refused() {
        let mut pairs = ADD.to_vec();
        pairs.push((
            "CNI_ARGS",
            "IgnoreUnknown=1;IP=10.0.0.5;MAC=02:00:00:00:00:01;X=y",
        ));
        let e = env(&pairs).unwrap();
        assert_eq!(e.args.ips, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(e.args.mac, Some([2, 0, 0, 0, 0, 1]));
        for bad in ["X=y", "IP=nope", "MAC=02:00", "novalue"] {
            let mut pairs = ADD.to_vec();
            pairs.push(("CNI_ARGS", bad));
            assert_eq!(env(&pairs).unwrap_err().code, INVALID_ENV, "{bad}");
        }
        let mut pairs = ADD.to_vec();
        pairs.push(("CNI_ARGS", "K8S_POD_NAME=p;K8S_POD_NAMESPACE=n"));
        assert!(env(&pairs).is_ok());
    }
}
