//! `scale`: N containers (`--scale N`, default 1,000) running `sleep 1000` on one bridge
//! network. At 10, 100 and 1,000 of them: `ls` and `inspect` latency (median, p99),
//! `run -d` per container, apiserver memory, plotted against N in docs/scale.svg. Then
//! the time to start them all (`container run -d`, one after another, as a script
//! would), the memory of every sandbox helper and of the apiserver with all of them up,
//! and the time to remove them all with one `container rm -f`. Memory is PSS from
//! `/proc/<pid>/smaps_rollup`, beside conmon's, podman's per-container monitor.

use std::time::Instant;

use anyhow::{Context, Result};

use super::podman::Podman;
use super::report::{Row, Section, Table, Target, Unit};
use super::run::container_cmd;
use super::sys::{self, Mem};
use super::{stats, Ctx};

const MIB: f64 = 1024.0 * 1024.0;
const NETWORK: &str = "benchscale";

pub fn measure(ctx: &Ctx, podman: Option<&Result<Podman, String>>) -> Section {
    let n = ctx.opts.scale_n();
    let mut notes = ctx.notes.of("scale");
    let mut times = Vec::new();
    let mut memory = Vec::new();
    let mut helper_pss = None;
    let mut helper_anon = None;

    let mut targets = Vec::new();
    if let Err(e) = ours(
        ctx,
        n,
        &mut times,
        &mut memory,
        &mut helper_pss,
        &mut helper_anon,
        &mut targets,
    ) {
        notes.push(format!("container: {e:#}"));
    }
    let _ = sys::output(container_cmd(ctx, "scale").args(["system", "stop"]));

    let k = if ctx.opts.quick { 3 } else { 10 };
    let mut conmon_anon = None;
    match podman {
        Some(Ok(p)) => match p.conmon_mem(k) {
            Ok(mems) => {
                memory.push(
                    Row::from_samples(
                        "conmon PSS",
                        Unit::Bytes,
                        &mems.iter().map(|m| m.pss).collect::<Vec<_>>(),
                    )
                    .extra(format!("{k} podman containers running `sleep`")),
                );
                memory.push(
                    Row::from_samples(
                        "conmon USS",
                        Unit::Bytes,
                        &mems.iter().map(|m| m.uss).collect::<Vec<_>>(),
                    )
                    .no_ratio(),
                );
                let anon: Vec<f64> = mems.iter().map(|m| m.anon).collect();
                conmon_anon = Some(stats::median(&anon));
                memory.push(Row::from_samples("conmon Anonymous", Unit::Bytes, &anon).no_ratio());
            }
            Err(e) => notes.push(format!("conmon: not measured: {e:#}")),
        },
        Some(Err(e)) => notes.push(format!("conmon: not measured, podman unusable: {e}")),
        None => {}
    }

    targets.extend([
        Target::ratio_at_most(
            "sandbox helper's Anonymous (smaps_rollup) no more than conmon's",
            helper_anon,
            conmon_anon,
            1.0,
            "conmon",
        ),
        Target {
            what: "every sandbox helper under 3 MiB PSS".into(),
            measured: match helper_pss {
                Some((median, max)) => {
                    format!("median {:.2} MiB, max {:.2} MiB", median / MIB, max / MIB)
                }
                None => "not measured".into(),
            },
            met: helper_pss.map(|(_, max)| max < 3.0 * MIB),
        },
    ]);
    let has_conmon = memory.iter().any(|r| r.name == "conmon PSS");
    Section {
        title: format!("Scale: {n} containers on one bridge network"),
        method: format!(
            "A timing loop in xtask: `container network create --subnet 10.99.0.0/16 {NETWORK}`, \
             then {n} × `container run -d --network {NETWORK} --rootfs R -- sleep 1000`, one after \
             another; PSS/USS/RSS and Anonymous of every sandbox helper and of the apiserver from \
             `/proc/<pid>/smaps_rollup` with all {n} running (pids from `container system \
             status`); then one `container rm -f` of all of them. conmon: the same memory \
             figures for podman containers run with `-d` (PSS splits shared pages among the \
             processes mapping them, so {n} helpers share their binary more than {k} conmons \
             do: USS is the per-process floor)."
        ),
        tables: vec![
            Table {
                title: "Time:".into(),
                rows: times,
                baseline: None,
            },
            Table {
                title: format!("Memory with {n} containers running:"),
                rows: memory,
                baseline: has_conmon.then(|| "conmon PSS".into()),
            },
        ],
        targets,
        notes,
    }
}

fn ours(
    ctx: &Ctx,
    n: usize,
    times: &mut Vec<Row>,
    memory: &mut Vec<Row>,
    helper_pss: &mut Option<(f64, f64)>,
    helper_anon: &mut Option<f64>,
    targets: &mut Vec<Target>,
) -> Result<()> {
    let rootfs = sys::rootfs(&ctx.state)?;
    let cli = || container_cmd(ctx, "scale");
    sys::output(cli().args(["system", "start"]))?;
    let idle = apiserver_mem(ctx)?;
    sys::output(cli().args(["network", "create", "--subnet", "10.99.0.0/16", NETWORK]))?;

    let mut ids = Vec::with_capacity(n);
    let mut per = Vec::with_capacity(n);
    let mut window: Vec<f64> = Vec::new();
    let mut curve = Vec::new();
    let all = Instant::now();
    for i in 0..n {
        let start = Instant::now();
        let out = sys::output(
            cli()
                .args(["run", "-d", "--network", NETWORK, "--name"])
                .arg(format!("scale-{i}"))
                .arg("--rootfs")
                .arg(&rootfs)
                .args(["--", "sleep", "1000"]),
        );
        match out {
            Ok(o) => {
                let took = start.elapsed().as_nanos() as f64;
                per.push(took);
                window.push(took);
                ids.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
                if CHECKPOINTS.contains(&ids.len()) {
                    curve.push(checkpoint(ctx, ids.len(), std::mem::take(&mut window))?);
                }
            }
            Err(e) => {
                // Measure what did start, and say where it stopped.
                ctx.notes.add(
                    "scale",
                    &format!("container {i} of {n} failed to start: {e:#}"),
                );
                break;
            }
        }
    }
    let total = all.elapsed().as_nanos() as f64;
    let started = ids.len();
    targets.extend(curve_targets(&curve));
    for c in &curve {
        for (what, samples) in [
            ("`ls`", &c.ls),
            ("`ls --format json`", &c.ls_json),
            ("`inspect`", &c.inspect),
        ] {
            times.push(
                Row::from_samples(format!("{what}, {} containers", c.n), Unit::Nanos, samples)
                    .extra(format!(
                        "p99 {}",
                        Unit::Nanos.human(stats::percentile(samples, 99.0))
                    ))
                    .no_ratio(),
            );
        }
        times.push(
            Row::from_samples(
                format!("`run -d` up to {} containers", c.n),
                Unit::Nanos,
                &c.run,
            )
            .no_ratio(),
        );
        times.push(
            Row::single(
                format!("apiserver PSS at {} containers", c.n),
                Unit::Bytes,
                c.pss,
            )
            .no_ratio(),
        );
    }
    super::plot::write(
        &ctx.figures_dir().join("scale.svg"),
        "container ls and run -d against the number of containers",
        "containers",
        "milliseconds",
        &[
            (
                "ls median",
                curve
                    .iter()
                    .map(|c| (c.n as f64, stats::median(&c.ls) / 1e6))
                    .collect(),
            ),
            (
                "ls p99",
                curve
                    .iter()
                    .map(|c| (c.n as f64, stats::percentile(&c.ls, 99.0) / 1e6))
                    .collect(),
            ),
            (
                "run -d median",
                curve
                    .iter()
                    .map(|c| (c.n as f64, stats::median(&c.run) / 1e6))
                    .collect(),
            ),
        ],
    )?;
    times.push(Row::single(
        format!("start all {started} (total)"),
        Unit::Nanos,
        total,
    ));
    times.push(Row::from_samples(
        "`run -d`, per container",
        Unit::Nanos,
        &per,
    ));

    let helpers = helper_mems(ctx)?;
    let pss: Vec<f64> = helpers.iter().map(|m| m.pss).collect();
    if !pss.is_empty() {
        *helper_pss = Some((stats::median(&pss), stats::max(&pss)));
        memory.push(
            Row::from_samples("sandbox helper PSS", Unit::Bytes, &pss)
                .extra(format!("max {}", Unit::Bytes.human(stats::max(&pss)))),
        );
        let uss: Vec<f64> = helpers.iter().map(|m| m.uss).collect();
        memory.push(Row::from_samples("sandbox helper USS", Unit::Bytes, &uss).no_ratio());
        let rss: Vec<f64> = helpers.iter().map(|m| m.rss).collect();
        memory.push(Row::from_samples("sandbox helper RSS", Unit::Bytes, &rss).no_ratio());
        let anon: Vec<f64> = helpers.iter().map(|m| m.anon).collect();
        *helper_anon = Some(stats::median(&anon));
        memory.push(Row::from_samples("sandbox helper Anonymous", Unit::Bytes, &anon).no_ratio());
    }
    let busy = apiserver_mem(ctx)?;
    memory.push(
        Row::single(
            format!("apiserver PSS, {started} containers"),
            Unit::Bytes,
            busy.pss,
        )
        .no_ratio()
        .extra(format!("idle: {}", Unit::Bytes.human(idle.pss))),
    );

    if !ids.is_empty() {
        let start = Instant::now();
        sys::output(cli().args(["rm", "-f"]).args(&ids))?;
        let total = start.elapsed().as_nanos() as f64;
        times.push(Row::single(
            format!("remove all {started} (one `rm -f`)"),
            Unit::Nanos,
            total,
        ));
        times.push(
            Row::single(
                "remove, per container (total / N)",
                Unit::Nanos,
                total / started as f64,
            )
            .no_ratio(),
        );
    }
    Ok(())
}

/// The apiserver's targets of issue 16, at the largest checkpoint reached: `ls` p99
/// under 10 ms with 1,000, `run -d` flat from 10 to 1,000 (its median there within
/// 1.25× of its median at 10: "flat" read with room for this machine's noise), and
/// the apiserver within 20 MiB.
fn curve_targets(curve: &[Checkpoint]) -> Vec<Target> {
    let (Some(first), Some(last)) = (curve.first(), curve.last()) else {
        return Vec::new();
    };
    let ls_p99 = stats::percentile(&last.ls, 99.0);
    let growth = stats::median(&last.run) / stats::median(&first.run);
    vec![
        Target {
            what: format!("`ls` p99 under 10 ms with {} containers", last.n),
            measured: Unit::Nanos.human(ls_p99),
            met: Some(ls_p99 < 10e6),
        },
        Target {
            what: format!(
                "`run -d` flat: median at {} within 1.25 × its median at {}",
                last.n, first.n
            ),
            measured: format!("{growth:.2} ×"),
            met: Some(growth <= 1.25),
        },
        Target {
            what: format!("apiserver PSS at most 20 MiB with {} containers", last.n),
            measured: format!("{:.2} MiB", last.pss / MIB),
            met: Some(last.pss <= 20.0 * MIB),
        },
    ]
}

/// Where the curve of cost against N is sampled, as the issue asks: 10, 100, 1,000.
const CHECKPOINTS: &[usize] = &[10, 100, 1000];

struct Checkpoint {
    n: usize,
    ls: Vec<f64>,
    ls_json: Vec<f64>,
    inspect: Vec<f64>,
    run: Vec<f64>,
    pss: f64,
}

/// With `n` containers up: `ls` (its table, and its JSON for scripts) and `inspect`
/// timed as a user types them (whole command), the `run -d` times since the last
/// checkpoint, the apiserver's memory.
fn checkpoint(ctx: &Ctx, n: usize, run: Vec<f64>) -> Result<Checkpoint> {
    let k = if ctx.opts.quick { 10 } else { 100 };
    let time = |args: &[&str]| -> Result<Vec<f64>> {
        let mut samples = Vec::with_capacity(k);
        for _ in 0..k {
            let start = Instant::now();
            sys::output(container_cmd(ctx, "scale").args(args))?;
            samples.push(start.elapsed().as_nanos() as f64);
        }
        Ok(samples)
    };
    Ok(Checkpoint {
        n,
        ls: time(&["ls"])?,
        ls_json: time(&["ls", "--format", "json"])?,
        inspect: time(&["inspect", "scale-0"])?,
        run,
        pss: apiserver_mem(ctx)?.pss,
    })
}

fn status(ctx: &Ctx) -> Result<serde_json::Value> {
    let out =
        sys::output(container_cmd(ctx, "scale").args(["system", "status", "--format", "json"]))?;
    serde_json::from_slice(&out.stdout).context("system status JSON")
}

fn apiserver_mem(ctx: &Ctx) -> Result<Mem> {
    let pid = status(ctx)?["pid"].as_u64().context("apiserver pid")?;
    sys::mem(pid as u32)
}

fn helper_mems(ctx: &Ctx) -> Result<Vec<Mem>> {
    let st = status(ctx)?;
    let helpers = st["helpers"].as_array().context("helpers")?;
    helpers
        .iter()
        .filter(|h| h["kind"].as_str() != Some("Network"))
        .filter_map(|h| h["pid"].as_u64())
        .map(|pid| sys::mem(pid as u32))
        .collect()
}
