//! `run`: one container end to end, `true` on the same busybox root filesystem, by
//! this runtime (`container run --rm --network default --rootfs R true`), podman
//! (`podman run --rm --network podman`, the rootfs imported as an image) and runc (`runc
//! run` of an OCI bundle on R, no network: the floor of any runtime built on it). Wall
//! time of each whole command from a timing loop: process start, container set-up,
//! the workload, tear-down and exit.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::podman::Podman;
use super::report::{Row, Section, Table, Target, Unit};
use super::sys;
use super::{bins, Ctx};

/// Untimed runs first: page cache, first-use set-up (the default network's helper,
/// podman's network) out of the samples.
const WARMUP: usize = 2;

pub fn measure(ctx: &Ctx, podman: Option<&Result<Podman, String>>) -> Section {
    let mut rows = Vec::new();
    let mut notes = ctx.notes.of("run");
    let n = ctx.opts.iterations(50);

    let ours = "container run --rm --network default";
    match container(ctx, n, "default", &[]) {
        Ok(s) => rows.push(Row::from_samples(ours, Unit::Nanos, &s)),
        Err(e) => notes.push(format!("container: not measured: {e:#}")),
    }
    // Issue 16's A/B: the sandbox spawn and the network's allocation overlap in a
    // start; this is the same start with them one after the other.
    let serial = "container run --rm --network default, start steps in series";
    match container_with(
        ctx,
        n,
        "default",
        &[],
        &[("CONTAINER_SERIAL_START", "true")],
    ) {
        Ok(s) => {
            let row = Row::from_samples(serial, Unit::Nanos, &s)
                .extra("apiserver `--serial-start`: the parallel start's baseline");
            if let Some(par) = rows.iter().find(|r| r.name == ours) {
                notes.push(format!(
                    "parallel start against steps in series: {:.2}× ({} against {})",
                    par.median / row.median,
                    Unit::Nanos.human(par.median),
                    Unit::Nanos.human(row.median)
                ));
            }
            rows.push(row);
        }
        Err(e) => notes.push(format!("container --serial-start: not measured: {e:#}")),
    }
    // Not a target: what the network part of ours costs, by difference.
    match container(ctx, n, "none", &[]) {
        Ok(s) => rows.push(
            Row::from_samples("container run --rm --network none", Unit::Nanos, &s)
                .extra("loopback only: the network's share is the difference"),
        ),
        Err(e) => notes.push(format!("container --network none: not measured: {e:#}")),
    }
    // What confinement costs: the same run with none of it (no filter to load, no
    // masks, no capability steps).
    let privileged = "container run --rm --network default --privileged";
    match container(ctx, n, "default", &["--privileged"]) {
        Ok(s) => rows.push(
            Row::from_samples(privileged, Unit::Nanos, &s)
                .extra("no seccomp filter, no masked paths, every capability"),
        ),
        Err(e) => notes.push(format!("container --privileged: not measured: {e:#}")),
    }

    // Not targets: what issue 10's resources cost. A user namespace of its own (made
    // at helper start, the root an idmapped mount), and the cgroup's set-up alone.
    match container(ctx, n, "none", &["--userns", "auto"]) {
        Ok(s) => rows.push(
            Row::from_samples(
                "container run --rm --network none --userns auto",
                Unit::Nanos,
                &s,
            )
            .extra("a user namespace and an idmapped root: the difference to --network none"),
        ),
        Err(e) => notes.push(format!("container --userns auto: not measured: {e:#}")),
    }
    for (joined, name, what) in [
        (false, "spawn /bin/true", "fork and exec alone: the floor of the next row"),
        (
            true,
            "spawn /bin/true in a new cgroup",
            "create with the default limits and device rules, join from the child (v1 `tasks`, cgroup2 `cgroup.procs`, as the product does), remove: the cgroup's cost in each run above is the difference",
        ),
    ] {
        match cgroup_setup(n, joined) {
            Ok(s) => rows.push(Row::from_samples(name, Unit::Nanos, &s).extra(what)),
            Err(e) => notes.push(format!("{name}: not measured: {e:#}")),
        }
    }

    let theirs = "podman run --rm --network podman";
    match podman {
        Some(Ok(p)) => {
            let r = sys::time_loop(WARMUP, ctx.opts.iterations(30), |_| p.run_true());
            match r {
                Ok(s) => rows.push(
                    Row::from_samples(theirs, Unit::Nanos, &s)
                        .extra(format!("network backend {}, runtime runc", p.backend)),
                ),
                Err(e) => notes.push(format!("podman: not measured: {e:#}")),
            }
        }
        Some(Err(e)) => notes.push(format!("podman: not measured: {e}")),
        None => {}
    }

    match runc(ctx, n) {
        Ok(s) => rows.push(
            Row::from_samples("runc run (no network)", Unit::Nanos, &s)
                .extra("OCI bundle on the same rootfs, read-only"),
        ),
        Err(e) => notes.push(format!("runc: not measured: {e:#}")),
    }

    let median = |name: &str| rows.iter().find(|r| r.name == name).map(|r| r.median);
    let targets = vec![
        Target::ratio_at_most(
            "at most 1/10 of podman's, default confinement on",
            median(ours),
            median(theirs),
            0.1,
            "podman",
        ),
        Target::ratio_at_most(
            "at most 1.2× of `--privileged`: confinement costs little",
            median(ours),
            median(privileged),
            1.2,
            "--privileged",
        ),
    ];
    let baseline = if median(theirs).is_some() {
        theirs
    } else {
        "runc run (no network)"
    };
    Section {
        title: "Container run end to end".into(),
        method: "A timing loop in xtask (`Instant` around each spawned command, after 2 \
                 untimed runs), all on one busybox-static root filesystem: `container run --rm \
                 --network default --rootfs R true` (apiserver already running; default \
                 confinement, and again with `--privileged`: none), `podman run --rm \
                 --network podman` of R imported with `podman import` (overlay storage, cgroupfs, \
                 runc, `default_ulimits = []` through a private `CONTAINERS_CONF`), and `runc run` \
                 of an OCI bundle on R with no network (the default spec's empty network \
                 namespace)."
            .into(),
        tables: vec![Table {
            title: "`true` in a new container, whole command:".into(),
            rows,
            baseline: Some(baseline.into()),
        }],
        targets,
        notes,
    }
}

/// The CLI with the bench's state roots for entry `entry`.
pub fn container_cmd(ctx: &Ctx, entry: &str) -> Command {
    let dir = ctx.state.join(format!("container-{entry}"));
    let mut cmd = Command::new(bins().join("container"));
    cmd.env("CONTAINER_ROOT", dir.join("root"))
        .env("CONTAINER_RUN_DIR", dir.join("run"))
        // The apiserver `system start` starts inherits it: the bench's containers go
        // under a parent of its own, removed at the end (`sys::remove_leftover_cgroups`).
        .env("CONTAINER_CGROUP_PARENT", bench_cgroup_parent());
    cmd
}

fn container(ctx: &Ctx, n: usize, network: &str, flags: &[&str]) -> Result<Vec<f64>> {
    container_with(ctx, n, network, flags, &[])
}

/// As [`container`], the apiserver started with `env`.
fn container_with(
    ctx: &Ctx,
    n: usize,
    network: &str,
    flags: &[&str],
    env: &[(&str, &str)],
) -> Result<Vec<f64>> {
    let rootfs = sys::rootfs(&ctx.state)?;
    let mut start = container_cmd(ctx, "run");
    start.args(["system", "start"]);
    for (k, v) in env {
        start.env(k, v);
    }
    sys::output(&mut start)?;
    let samples = sys::time_loop(WARMUP, n, |_| {
        sys::output(
            container_cmd(ctx, "run")
                .args(["run", "--rm", "--network", network])
                .args(flags)
                .arg("--rootfs")
                .arg(&rootfs)
                .args(["--", "true"]),
        )
        .map(|_| ())
    });
    let _ = sys::output(container_cmd(ctx, "run").args(["system", "stop"]));
    samples
}

/// What the sandbox helper does for a container's cgroup, alone (with `joined`), under
/// a parent of the bench's own (removed at the end): a process started in it as the
/// workload is, from its child.
fn cgroup_setup(n: usize, joined: bool) -> Result<Vec<f64>> {
    use container_cgroups::{Cgroup, Layout, Limits, DEFAULT_RULES};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let layout = Layout::detect()?;
    let parent = format!("{}/setup", bench_cgroup_parent());
    let limits = Limits {
        pids_max: Some(2048),
        cpu_period_us: 100_000,
        devices: DEFAULT_RULES.to_vec(),
        ..Limits::default()
    };
    let samples = sys::time_loop(WARMUP, n, |i| {
        let mut cmd = Command::new("/bin/true");
        if !joined {
            cmd.status()?;
            return Ok(());
        }
        let cg = Cgroup::new(layout.clone(), &format!("{parent}/c{i}"))?;
        cg.create(&limits)?;
        let procs = cg.procs_files()?;
        let raw: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
        // SAFETY: write(2) of a static buffer only, as the launch plan's step.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &raw {
                    if libc_write(*fd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd.status()?;
        drop(procs);
        cg.remove()?;
        Ok(())
    });
    let _ = container_cgroups::remove_tree(&layout, &parent);
    samples
}

/// The cgroup parent of this bench run's containers.
pub fn bench_cgroup_parent() -> String {
    format!("container-bench-{}", std::process::id())
}

/// `write(fd, "0", 1)`, without a libc dependency of xtask's own.
fn libc_write(fd: i32) -> isize {
    extern "C" {
        fn write(fd: i32, buf: *const u8, n: usize) -> isize;
    }
    // SAFETY: a one-byte static buffer.
    unsafe { write(fd, b"0".as_ptr(), 1) }
}

fn runc(ctx: &Ctx, n: usize) -> Result<Vec<f64>> {
    let rootfs = sys::rootfs(&ctx.state)?;
    let dir = ctx.state.join("runc");
    let bundle = dir.join("bundle");
    let root = dir.join("state");
    std::fs::create_dir_all(&bundle)?;
    std::fs::create_dir_all(&root)?;
    sys::output(
        Command::new("runc")
            .arg("spec")
            .arg("--bundle")
            .arg(&bundle),
    )?;
    let spec_path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spec_path)?).context("runc spec output")?;
    spec["root"] = serde_json::json!({ "path": rootfs, "readonly": true });
    spec["process"]["args"] = serde_json::json!(["true"]);
    spec["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;
    sys::time_loop(WARMUP, n, |i| runc_run(&root, &bundle, i))
}

fn runc_run(root: &Path, bundle: &Path, i: usize) -> Result<()> {
    // The id names runc's cgroups too; the prefix lets cleanup find any left behind.
    sys::output(
        Command::new("runc")
            .arg("--root")
            .arg(root)
            .arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg(format!("container-bench-runc-{i}")),
    )
    .map(|_| ())
}
