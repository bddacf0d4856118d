//! Helpers shared by the integration tests: temp network dirs and the real host-local
//! binary driven the way a CNI runtime drives it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use container_ipam::{Ipam, RangeSet};
use ipnet::IpNet;

pub const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

/// The reference host-local binary. The tests that share a directory with it are the
/// point of this crate, so its absence fails them rather than skipping them.
pub fn host_local() -> &'static Path {
    let p = Path::new(HOST_LOCAL);
    assert!(
        p.exists(),
        "{HOST_LOCAL} is absent: install containernetworking-plugins (cargo xtask deps)"
    );
    p
}

pub fn rs(subnet: &str) -> RangeSet {
    RangeSet::new(subnet.parse().unwrap())
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A network directory laid out as in production: `<root>/ipam/<network>`.
pub struct Net {
    pub root: tempfile::TempDir,
    pub name: String,
    pub ranges: Vec<RangeSet>,
}

impl Net {
    pub fn new(ranges: Vec<RangeSet>) -> Net {
        Net {
            root: tempfile::tempdir().unwrap(),
            name: "testnet".into(),
            ranges,
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.path().join("ipam").join(&self.name)
    }

    pub fn ipam(&self) -> Ipam {
        Ipam::open_network(self.root.path(), &self.name, self.ranges.clone()).unwrap()
    }

    /// Sorted names of the files in the network directory.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.dir().join(name)).unwrap()
    }

    /// The host-local config for the same ranges, in the same order, so both sides use the
    /// same `last_reserved_ip.<index>` files.
    pub fn host_local_config(&self) -> String {
        let ranges: Vec<_> = self
            .ranges
            .iter()
            .map(|r| serde_json::json!([serde_json::to_value(r).unwrap()]))
            .collect();
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": self.name,
            "type": "host-local",
            "ipam": {
                "type": "host-local",
                "dataDir": self.root.path().join("ipam"),
                "ranges": ranges,
            }
        })
        .to_string()
    }

    pub fn host_local_cmd(&self, command: &str, id: &str, ifname: &str) -> Command {
        let mut cmd = Command::new(HOST_LOCAL);
        cmd.env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", "/dev/null")
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs host-local with the network's config on stdin.
    pub fn run_host_local(&self, command: &str, id: &str, ifname: &str) -> Output {
        run_with_stdin(
            self.host_local_cmd(command, id, ifname),
            &self.host_local_config(),
        )
    }

    /// host-local ADD; panics on failure; returns the addresses it printed.
    pub fn host_local_add(&self, id: &str, ifname: &str) -> Vec<IpNet> {
        let out = self.run_host_local("ADD", id, ifname);
        assert!(
            out.status.success(),
            "host-local ADD {id} {ifname} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        parse_host_local_ips(&out.stdout)
    }

    pub fn host_local_del(&self, id: &str, ifname: &str) {
        let out = self.run_host_local("DEL", id, ifname);
        assert!(
            out.status.success(),
            "host-local DEL failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// Writes a reservation file by hand, e.g. in the old id-only format.
    pub fn write_raw(&self, name: &str, content: &str) {
        fs::write(self.dir().join(name), content).unwrap();
    }
}

pub fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn parse_host_local_ips(stdout: &[u8]) -> Vec<IpNet> {
    let v: serde_json::Value = serde_json::from_slice(stdout).unwrap();
    v["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// ip -> (container id, ifname) straight from the reservation files.
pub fn holders(ipam: &Ipam) -> HashMap<IpAddr, (String, String)> {
    ipam.reservations()
        .unwrap()
        .into_iter()
        .map(|r| (r.ip, (r.container_id, r.ifname)))
        .collect()
}
