//! `cargo xtask <command>`: what a newcomer and CI run.
//!
//! * `deps`  — install the Debian packages the runtime and its tests use (root).
//! * `test`  — deps, build every binary, run every test (root; kernel tests isolate
//!   themselves in private namespaces).
//! * `lint`  — rustfmt and clippy, warnings as errors.
//! * `demo`  — deps, build, start the apiserver, run a container on a network
//!   (`--isolated`: in private namespaces with a temporary state tree).
//! * `bench` — criterion benchmarks; writes `docs/benchmarks.md`.

mod bench;
mod demo;
mod dist;
mod fuzz;
mod oci;
mod soak;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Debian packages and a file each one provides, to skip apt when all are present.
const PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "/usr/sbin/ip"),
    ("nftables", "/usr/sbin/nft"),
    ("containernetworking-plugins", "/usr/lib/cni/host-local"),
    // The CNI portmap plugin writes its rules with iptables.
    ("iptables", "/usr/sbin/iptables"),
    ("busybox-static", "/bin/busybox"),
    ("systemd", "/usr/bin/systemd-analyze"),
    ("util-linux", "/usr/bin/setpriv"),
    ("procps", "/usr/bin/pgrep"),
    // The apiserver compiles seccomp profiles with libseccomp.
    ("libseccomp-dev", "/usr/include/seccomp.h"),
    // The confinement suite builds its static probe binary.
    ("gcc", "/usr/bin/gcc"),
    ("libc6-dev", "/usr/include/stdio.h"),
    // Image tests: a real registry, tools that push to it and write archives.
    ("docker-registry", "/usr/bin/docker-registry"),
    ("skopeo", "/usr/bin/skopeo"),
    ("podman", "/usr/bin/podman"),
    ("apache2-utils", "/usr/bin/htpasswd"),
    // container-cni under a real CNI runtime: `ctr run --cni` (tests/tests/cni_runtimes.rs).
    ("containerd", "/usr/bin/containerd"),
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        bail!("usage: cargo xtask <deps|test|lint|demo|soak|fuzz|bench|man|dist> [args]");
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "deps" => deps(),
        "test" => test(rest),
        "lint" => lint(),
        "demo" => demo::run(rest),
        "demo-inner" => demo::inner(rest),
        "soak" => soak::run(rest),
        "bench" => bench::run(rest),
        "bench-init" => bench::init(rest),
        "bench-inner" => bench::inner(rest),
        "fuzz" => fuzz::run(rest),
        "man" => dist::man(rest),
        "dist" => dist::dist(rest),
        other => bail!(
            "unknown xtask {other:?}: use deps, test, lint, demo, soak, fuzz, bench, man or dist"
        ),
    }
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace());
    cmd
}

fn deps() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !nix_is_root() {
        bail!(
            "missing packages {missing:?}; install them as root: apt-get install {}",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn test(rest: &[String]) -> Result<()> {
    if !nix_is_root() {
        bail!("the tests create namespaces, links and nftables rules: run them as root");
    }
    deps()?;
    // Integration tests start the real binaries, so build them all first.
    run(cargo().args(["build", "--workspace", "--bins"]))?;
    run(cargo().args(["test", "--workspace"]).args(rest))
}

fn lint() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}
