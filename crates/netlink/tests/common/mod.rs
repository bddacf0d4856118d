#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Built after `container_testkit::isolate()`, so the runtime (and any thread it
/// starts) lives in the test's private namespaces.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `ip -j ARGS`, in the test's namespace or, through nsenter, in a bound one. Only a
/// cross-check of what the kernel reports; the library never runs `ip`.
pub fn ip_json(netns: Option<&Path>, args: &[&str]) -> serde_json::Value {
    let mut cmd = match netns {
        Some(path) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", path.display())).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    let out = cmd.arg("-j").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ip -j output is JSON")
}

/// The single link `ip -j [-d] link show dev NAME` reports.
pub fn ip_link(netns: Option<&Path>, name: &str, details: bool) -> serde_json::Value {
    let mut args = vec![];
    if details {
        args.push("-d");
    }
    args.extend(["link", "show", "dev", name]);
    let v = ip_json(netns, &args);
    v.as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_else(|| panic!("ip link show {name}: no link in {v}"))
}

pub fn mac_str(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn has_flag(link: &serde_json::Value, flag: &str) -> bool {
    link["flags"]
        .as_array()
        .map(|f| f.iter().any(|x| x == flag))
        .unwrap_or(false)
}

pub fn ipv6_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6")
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

/// A bound namespace removed again when the test ends, even by a panic, so the
/// testkit's temporary directory holds no mount point and can be deleted.
pub struct BoundNs {
    pub ns: container_netlink::NetNs,
    pub path: std::path::PathBuf,
}

impl BoundNs {
    pub fn new(path: std::path::PathBuf) -> BoundNs {
        let ns = container_netlink::NetNs::create_bound(&path).expect("create bound netns");
        BoundNs { ns, path }
    }
}

impl std::ops::Deref for BoundNs {
    type Target = container_netlink::NetNs;
    fn deref(&self) -> &Self::Target {
        &self.ns
    }
}

impl Drop for BoundNs {
    fn drop(&mut self) {
        let _ = container_netlink::NetNs::remove_bound(&self.path);
    }
}
