//! The Debian packages the bench compares against, installed when missing: one
//! `apt-get update`, then one `apt-get install` of every missing package the configured
//! sources offer. A package they do not offer (netavark is in bookworm's main, but a
//! machine's sources may lack it) becomes a note in the report, not a failure.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::Notes;
use crate::run as sh;

/// Package, a file it provides (to skip apt when present), and the entries that use it.
const BENCH_PACKAGES: &[(&str, &[&str], &str)] = &[
    (
        "containernetworking-plugins",
        &["/usr/lib/cni/bridge", "/usr/lib/cni/host-local"],
        "attach, ipam",
    ),
    (
        "netavark",
        &["/usr/lib/podman/netavark", "/usr/libexec/podman/netavark"],
        "attach, run",
    ),
    ("podman", &["/usr/bin/podman"], "run, scale"),
    ("runc", &["/usr/sbin/runc", "/usr/bin/runc"], "run"),
    ("iproute2", &["/usr/sbin/ip", "/sbin/ip"], "attach"),
    ("busybox-static", &["/bin/busybox"], "run, scale"),
    ("util-linux", &["/usr/bin/unshare"], "all"),
    ("tar", &["/bin/tar", "/usr/bin/tar"], "run"),
    (
        "aardvark-dns",
        &[
            "/usr/lib/podman/aardvark-dns",
            "/usr/libexec/podman/aardvark-dns",
        ],
        "dns",
    ),
    ("dnsperf", &["/usr/bin/dnsperf"], "dns"),
];

fn present(files: &[&str]) -> bool {
    files.iter().any(|f| Path::new(f).exists())
}

/// Whether the configured sources offer `pkg` (`apt-cache policy` has a candidate).
fn available(pkg: &str) -> bool {
    Command::new("apt-cache")
        .args(["policy", pkg])
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout);
            text.lines().any(|l| {
                l.trim()
                    .strip_prefix("Candidate:")
                    .is_some_and(|c| c.trim() != "(none)")
            })
        })
        .unwrap_or(false)
}

pub fn install(notes: &Notes) -> Result<()> {
    // The project's own packages (crate::PACKAGES) too, so one update serves both.
    let mut missing: Vec<&str> = crate::PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    for (pkg, files, _) in BENCH_PACKAGES {
        if !present(files) && !missing.contains(pkg) {
            missing.push(pkg);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: bench packages missing: {}", missing.join(" "));
    sh(Command::new("apt-get").args(["update", "-qq"]))?;
    let (offered, absent): (Vec<&str>, Vec<&str>) =
        missing.into_iter().partition(|pkg| available(pkg));
    for pkg in absent {
        let entries = BENCH_PACKAGES
            .iter()
            .find(|(p, _, _)| *p == pkg)
            .map(|(_, _, e)| *e)
            .unwrap_or("all");
        for entry in entries.split(", ") {
            notes.add(
                entry,
                &format!("{pkg}: not offered by this machine's Debian sources (apt-cache policy {pkg}); its rows are missing"),
            );
        }
    }
    if offered.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", offered.join(" "));
    // No recommends: the bench needs the tools, not buildah, slirp4netns or criu.
    sh(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&offered)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
