//! `cni`: one pod's ADD then DEL through `container-cni` (release build) against the
//! reference `bridge` plugin with `host-local` IPAM (Debian's containernetworking-plugins),
//! each invoked as libcni invokes a plugin: a process per call, the config on stdin, the
//! `CNI_*` environment. Both configs have the same shape (a gateway bridge, one /24, no
//! masquerade), their own bridge and directory, and the same netns; the two alternate
//! within each iteration so that load on the shared machine falls on both alike.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::report::{Row, Section, Table, Target, Unit};
use super::{bins, Ctx};

const REFERENCE: &str = "/usr/lib/cni";
const WARMUP: usize = 3;
const OURS: &str = "container-cni ADD + DEL";
const THEIRS: &str = "reference bridge + host-local ADD + DEL";

struct Plugin {
    binary: std::path::PathBuf,
    conf: Value,
}

fn call(p: &Plugin, command: &str, id: &str, netns: &Path) -> Result<()> {
    let mut child = Command::new(&p.binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", REFERENCE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {}", p.binary.display()))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(p.conf.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{} {command}: {}{}",
            p.binary.display(),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The kernel's part of any DEL: a veth pair made, then timed as it is deleted with
/// `ip link del` (one netlink request; ip's own start included).
fn veth_delete() -> Result<f64> {
    super::sys::output(Command::new("ip").args([
        "link", "add", "cbench-a", "type", "veth", "peer", "name", "cbench-b",
    ]))?;
    let start = Instant::now();
    super::sys::output(Command::new("ip").args(["link", "del", "cbench-a"]))?;
    Ok(start.elapsed().as_nanos() as f64)
}

/// `(add, del)` in nanoseconds.
fn add_del(p: &Plugin, id: &str, netns: &Path) -> Result<(f64, f64)> {
    let start = Instant::now();
    call(p, "ADD", id, netns)?;
    let added = start.elapsed();
    call(p, "DEL", id, netns)?;
    Ok((
        added.as_nanos() as f64,
        (start.elapsed() - added).as_nanos() as f64,
    ))
}

fn conf(kind: &str, bridge: &str, subnet: &str, data: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": format!("bench-{kind}"),
        "type": kind,
        "bridge": bridge,
        "isGateway": true,
        "ipMasq": false,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": data},
    })
}

fn samples(ctx: &Ctx, n: usize) -> Result<[Vec<f64>; 7]> {
    let dir = ctx.state.join("cni");
    std::fs::create_dir_all(&dir)?;
    // bench-init put /run behind tmpfs: this netns lives only as long as the bench.
    super::sys::output(Command::new("ip").args(["netns", "add", "cni-bench"]))?;
    let netns = Path::new("/run/netns/cni-bench");
    let ours = Plugin {
        binary: bins().join("container-cni"),
        conf: conf("container-cni", "cbench-ours", "10.201.0.0/24", &dir),
    };
    let theirs = Plugin {
        binary: Path::new(REFERENCE).join("bridge"),
        conf: conf("bridge", "cbench-ref", "10.202.0.0/24", &dir),
    };
    let mut out: [Vec<f64>; 7] = Default::default();
    for i in 0..WARMUP + n {
        let id = format!("bench-{i}");
        let a = add_del(&ours, &id, netns)?;
        let b = add_del(&theirs, &id, netns)?;
        let floor = veth_delete()?;
        if i >= WARMUP {
            out[6].push(floor);
            out[0].push(a.0 + a.1);
            out[1].push(a.0);
            out[2].push(a.1);
            out[3].push(b.0 + b.1);
            out[4].push(b.0);
            out[5].push(b.1);
        }
    }
    let _ = super::sys::output(Command::new("ip").args(["netns", "del", "cni-bench"]));
    Ok(out)
}

pub fn measure(ctx: &Ctx) -> Section {
    let n = ctx.opts.iterations(100);
    let mut notes = ctx.notes.of("cni");
    let mut rows = Vec::new();
    match samples(ctx, n) {
        Ok(s) => {
            rows.push(Row::from_samples(OURS, Unit::Nanos, &s[0]));
            rows.push(
                Row::from_samples(THEIRS, Unit::Nanos, &s[3]).extra("bridge execs host-local"),
            );
            rows.push(Row::from_samples("container-cni ADD", Unit::Nanos, &s[1]));
            rows.push(Row::from_samples("container-cni DEL", Unit::Nanos, &s[2]));
            rows.push(Row::from_samples("reference ADD", Unit::Nanos, &s[4]));
            rows.push(Row::from_samples("reference DEL", Unit::Nanos, &s[5]));
            rows.push(
                Row::from_samples("floor: `ip link del` of a veth pair", Unit::Nanos, &s[6]).extra(
                    "the kernel's unregister of the pair, waited for whole; ip's start included",
                ),
            );
        }
        Err(e) => notes.push(format!("not measured: {e:#}")),
    }
    let median = |name: &str| rows.iter().find(|r| r.name == name).map(|r| r.median);
    let targets = vec![Target::ratio_at_most(
        "ADD + DEL at most 0.5× the reference bridge + host-local",
        median(OURS),
        median(THEIRS),
        0.5,
        "reference",
    )];
    Section {
        title: "CNI plugin: ADD + DEL".into(),
        method: "A timing loop in xtask: per iteration one ADD and one DEL of a pod's eth0 \
                 through `container-cni` (release) and through Debian's reference `bridge` \
                 with `host-local`, alternating, each a process exec'd as libcni execs it \
                 (config on stdin, `CNI_*` environment); same config shape (gateway bridge, \
                 one /24, no ipMasq), same netns, 3 untimed iterations first."
            .into(),
        tables: vec![Table {
            title: "one pod's ADD then DEL, whole processes:".into(),
            rows,
            baseline: Some(THEIRS.into()),
        }],
        targets,
        notes,
    }
}
