//! The criterion entries: `attach` (crates/sandbox-helper/benches/attach.rs), `ipam`
//! (crates/ipam/benches/ipam.rs) and `endpoint` (crates/protocol/benches/endpoint.rs).
//! They run as one `cargo bench` inside the bench's namespaces (built beforehand on
//! the host, so `--offline` holds), and their results are read back from criterion's
//! JSON: the median estimate, and p10/p90 of the per-iteration means of the samples.

use std::path::{Path, PathBuf};

use super::report::{Row, Section, Table, Target, Unit};
use super::{target_dir, Ctx, Entry, Options};
use crate::cargo;

/// Entry and the bench target that measures it.
const BENCHES: &[(Entry, &str)] = &[
    (Entry::Attach, "attach"),
    (Entry::Ipam, "ipam"),
    (Entry::Endpoint, "endpoint"),
];

pub fn selected(opts: &Options) -> Vec<&'static str> {
    BENCHES
        .iter()
        .filter(|(e, _)| opts.wants(*e))
        .map(|(_, b)| *b)
        .collect()
}

pub fn target_args(benches: &[&str]) -> Vec<String> {
    benches
        .iter()
        .flat_map(|b| ["--bench".to_string(), b.to_string()])
        .collect()
}

fn criterion_dir() -> PathBuf {
    target_dir().join("criterion")
}

/// One criterion benchmark's result.
pub struct Bench {
    pub group: String,
    /// `function` or `function/value`.
    pub name: String,
    pub median_ns: f64,
    /// Per-iteration mean of each sample.
    pub per_iter: Vec<f64>,
}

impl Bench {
    fn row(&self, name: &str) -> Row {
        let mut row = Row::from_samples(name, Unit::Nanos, &self.per_iter);
        // criterion's own estimate, which its console output shows too.
        row.median = self.median_ns;
        row
    }
}

/// Runs the selected benches and reads their results. A failing bench leaves a note
/// and whatever results it wrote; the other entries still run.
pub fn run(ctx: &Ctx, benches: &[&str]) -> Vec<Bench> {
    let dir = criterion_dir();
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = cargo();
    cmd.args(["bench", "--workspace", "--offline"])
        .args(target_args(benches))
        .arg("--")
        .arg("--noplot")
        // stdout is for the report; criterion's own lines go with the other logs.
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .env("CRITERION_HOME", &dir)
        .env("BENCH_NOTES", ctx.notes.path());
    if ctx.opts.quick {
        cmd.arg("--quick");
    }
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => ctx.notes.add(
            "all",
            &format!(
                "cargo bench {} failed ({s}): its results may be partial",
                benches.join(" ")
            ),
        ),
        Err(e) => ctx.notes.add("all", &format!("cargo bench: {e}")),
    }
    collect(&dir)
}

fn collect(dir: &Path) -> Vec<Bench> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(list) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in list.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n == "new") {
                found.extend(read(&p));
            } else {
                stack.push(p);
            }
        }
    }
    found.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
    found
}

fn read(new: &Path) -> Option<Bench> {
    let json = |file: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(new.join(file)).ok()?).ok()
    };
    let bench = json("benchmark.json")?;
    let est = json("estimates.json")?;
    let sample = json("sample.json")?;
    let mut name = bench["function_id"].as_str().unwrap_or("").to_string();
    if let Some(v) = bench["value_str"].as_str() {
        name = format!("{name}/{v}");
    }
    let nums = |k: &str| -> Vec<f64> {
        sample[k]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default()
    };
    let per_iter = nums("iters")
        .iter()
        .zip(nums("times"))
        .filter(|(n, _)| **n > 0.0)
        .map(|(n, t)| t / n)
        .collect();
    Some(Bench {
        group: bench["group_id"].as_str()?.to_string(),
        name,
        median_ns: est["median"]["point_estimate"].as_f64()?,
        per_iter,
    })
}

fn find<'a>(all: &'a [Bench], group: &str, name: &str) -> Option<&'a Bench> {
    all.iter().find(|b| b.group == group && b.name == name)
}

fn median(all: &[Bench], group: &str, name: &str) -> Option<f64> {
    find(all, group, name).map(|b| b.median_ns)
}

/// Notes of the entry, plus a line when the bench produced nothing at all.
fn notes(ctx: &Ctx, entry: Entry, tables: &[Table]) -> Vec<String> {
    let mut notes = ctx.notes.of(entry.name());
    if tables.iter().all(|t| t.rows.is_empty()) {
        notes.push("no results: the bench did not run or failed (see the log above)".into());
    }
    notes
}

pub fn attach_section(all: &[Bench], ctx: &Ctx) -> Section {
    const G: &str = "attach_bridge";
    const ORDER: &[(&str, &str)] = &[
        (
            "ip_batch_floor_baseline",
            "one `ip -batch` process (the floor)",
        ),
        (
            "container_bridge_strategy",
            "container: bridge strategy, torn down as the product does (namespace removed, \
             the kernel deletes the pair in the background; creating the namespace included)",
        ),
        (
            "container_explicit_delete",
            "container: the same set-up, veth deleted explicitly (the path for a namespace \
             that cannot be removed), connections held",
        ),
        (
            "container_explicit_delete_fresh_netlink",
            "container: explicit delete + opening both netlink connections",
        ),
        (
            "cni_bridge_host_local",
            "CNI `bridge` + `host-local`, ADD and DEL processes",
        ),
        (
            "netavark_internal",
            "netavark setup + teardown, internal network (no firewall)",
        ),
        (
            "netavark_nat",
            "netavark setup + teardown, NAT network (iptables)",
        ),
    ];
    let rows = ORDER
        .iter()
        .filter_map(|(name, what)| find(all, G, name).map(|b| b.row(name).extra(*what)))
        .collect();
    let table = Table {
        title:
            "One veth attachment to a bridge, set up and torn down in a prepared network namespace:"
                .into(),
        rows,
        baseline: Some("ip_batch_floor_baseline".into()),
    };
    let ours = median(all, G, "container_bridge_strategy");
    let targets = vec![
        Target::ratio_at_most(
            "at most half the CNI time",
            ours,
            median(all, G, "cni_bridge_host_local"),
            0.5,
            "CNI",
        ),
        Target::ratio_at_most(
            "within 1.5× of the `ip -batch` floor",
            ours,
            median(all, G, "ip_batch_floor_baseline"),
            1.5,
            "floor",
        ),
    ];
    let tables = vec![table];
    Section {
        title: "Attachment set-up + tear-down".into(),
        method: "Criterion (`crates/sandbox-helper/benches/attach.rs`), in a private network \
                 namespace: each contender has its own bridge (made up front, with the gateway \
                 address) and its own prepared container namespace; one iteration creates the \
                 veth with its peer in the container, enslaves and raises the host end, adds the \
                 address and default route, raises the peer, then deletes the pair. Each contender's \
                 trial run is checked (address present, then gone) before timing. Ours calls \
                 `interfaces::realize` + `interfaces::remove` in-process; the floor is one `ip \
                 -batch` process run inside the container namespace that creates the host end \
                 across namespaces (`netns`, `master ifN`); CNI is the `bridge` plugin (which runs \
                 `host-local`), ADD then DEL, no masquerade; netavark is `setup` then `teardown` \
                 with podman's network options, an anchor container keeping the bridge alive."
            .into(),
        notes: notes(ctx, Entry::Attach, &tables),
        tables,
        targets,
    }
}

/// Reservation counts of the ipam bench (`SIZES` in crates/ipam/benches/ipam.rs).
const IPAM_SIZES: [u32; 4] = [100, 1_000, 10_000, 60_000];

/// A target on one time: met when the median is at most `limit_ns`.
fn time_at_most(what: &str, median_ns: Option<f64>, limit_ns: f64) -> Target {
    match median_ns {
        Some(m) if m.is_finite() => Target {
            what: what.into(),
            measured: Unit::Nanos.human(m),
            met: Some(m <= limit_ns),
        },
        _ => Target {
            what: what.into(),
            measured: "not measured".into(),
            met: None,
        },
    }
}

pub fn ipam_section(all: &[Bench], ctx: &Ctx) -> Section {
    const RT: &str = "round_trip";
    let mut tables = Vec::new();
    let mut targets = Vec::new();
    for n in IPAM_SIZES {
        let theirs = format!("host-local/{n}");
        let rows: Vec<Row> = [
            (theirs.clone(), "host-local binary, ADD and DEL processes"),
            (
                format!("floor/{n}"),
                "the filesystem's floor: one O_EXCL create with its write, one unlink",
            ),
            (
                format!("ours/{n}"),
                "container-ipam, long-lived (the network helper): index kept",
            ),
            (
                format!("short-lived/{n}"),
                "container-ipam opened per call (a CNI plugin): reads the directory twice",
            ),
        ]
        .iter()
        .filter_map(|(name, what)| {
            find(all, RT, name).map(|b| {
                b.row(name)
                    .extra(format!("{what}; {:.0} allocations/s", 1e9 / b.median_ns))
            })
        })
        .collect();
        tables.push(Table {
            title: format!(
                "Allocate + release one address, {} reservations already on disk:",
                thousands(n)
            ),
            rows,
            baseline: Some(theirs),
        });
    }
    let ratio = |n: u32, limit: f64, what: &str| {
        Target::ratio_at_most(
            what,
            median(all, RT, &format!("ours/{n}")),
            median(all, RT, &format!("host-local/{n}")),
            limit,
            "host-local",
        )
    };
    targets.push(ratio(
        10_000,
        0.01,
        "at least 100× host-local's allocations/s (10,000 reservations)",
    ));
    for n in [100, 1_000, 60_000] {
        targets.push(ratio(
            n,
            1.0,
            &format!("faster than host-local ({} reservations)", thousands(n)),
        ));
    }
    targets.push(time_at_most(
        "GC at 10,000 reservations, none stale, at most 20 ms",
        median(all, "gc_10000", "none_stale"),
        20e6,
    ));
    targets.push(time_at_most(
        "GC at 10,000 reservations, all stale, at most 100 ms",
        median(all, "gc_10000", "all_stale"),
        100e6,
    ));

    let gc_rows = [
        (
            "unlink_floor",
            "10,000 bare unlinks of the same files: the floor of a GC that removes them all",
        ),
        (
            "all_stale",
            "10,000 reservations, all stale: one listing, 10,000 removals",
        ),
        ("half_stale", "5,000 of 10,000 stale"),
        (
            "none_stale",
            "none stale, helper running: one listing held against the index",
        ),
        (
            "none_stale_helper_start",
            "none stale, a helper's first call: the index read whole (one listing, a read per file), that listing serving the GC",
        ),
    ]
    .iter()
    .filter_map(|(name, what)| find(all, "gc_10000", name).map(|b| b.row(name).extra(*what)))
    .collect();
    tables.push(Table {
        title: "GC of 10,000 reservations (host-local has no GC to compare with):".into(),
        rows: gc_rows,
        baseline: Some("unlink_floor".into()),
    });
    let gc_n = IPAM_SIZES
        .iter()
        .filter_map(|n| {
            let name = format!("ours/{n}");
            find(all, "gc_none_stale", &name).map(|b| b.row(&name))
        })
        .collect();
    tables.push(Table {
        title: "GC with none stale against the number of reservations (helper running):".into(),
        rows: gc_n,
        baseline: None,
    });
    plot_ipam(all, ctx);
    Section {
        title: "IPAM".into(),
        method: "Criterion (`crates/ipam/benches/ipam.rs`): allocate+release through \
                 `container-ipam` against the CNI `host-local` binary (ADD then DEL, two \
                 processes) on the same directory layout at 100 to 60,000 reservations, and \
                 GC time; files on the real filesystem under the temp dir. `ours` is one \
                 `Ipam` kept open, as in the network helper; `short-lived` opens one per \
                 call, as a CNI plugin would (process start not included). See docs/ipam.md."
            .into(),
        notes: notes(ctx, Entry::Ipam, &tables),
        tables,
        targets,
    }
}

/// `ipam.svg` (every contender, milliseconds) and `ipam-ours.svg` (the long-lived
/// index and the filesystem's floor, microseconds: on the first figure they lie on the
/// axis).
fn plot_ipam(all: &[Bench], ctx: &Ctx) {
    let series = |name: &str, scale: f64| -> Vec<(f64, f64)> {
        IPAM_SIZES
            .iter()
            .filter_map(|n| {
                median(all, "round_trip", &format!("{name}/{n}")).map(|m| (*n as f64, m / scale))
            })
            .collect()
    };
    let figures = [
        (
            "ipam.svg",
            "Allocate + release against reservations on disk",
            "milliseconds",
            vec![
                ("host-local", series("host-local", 1e6)),
                ("container-ipam, short-lived", series("short-lived", 1e6)),
                ("container-ipam, long-lived", series("ours", 1e6)),
            ],
        ),
        (
            "ipam-ours.svg",
            "container-ipam, long-lived: allocate + release",
            "microseconds",
            vec![
                ("container-ipam, long-lived", series("ours", 1e3)),
                ("filesystem floor (create + unlink)", series("floor", 1e3)),
            ],
        ),
    ];
    for (file, title, unit, lines) in figures {
        let path = ctx.figures_dir().join(file);
        if let Err(e) = super::plot::write(&path, title, "reservations on disk", unit, &lines) {
            ctx.notes
                .add(Entry::Ipam.name(), &format!("figure {file}: {e:#}"));
        }
    }
}

fn thousands(n: u32) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn endpoint_section(all: &[Bench], ctx: &Ctx) -> Section {
    let mut tables = Vec::new();
    let mut targets = Vec::new();
    for flavor in ["current_thread", "multi_thread"] {
        let g = format!("endpoint_round_trip_{flavor}");
        let mut rows: Vec<Row> = [
            (
                "unix_socket_echo_baseline",
                "8 bytes echoed over a socketpair",
            ),
            (
                "vended_endpoint_call",
                "one small call over a vended endpoint",
            ),
        ]
        .iter()
        .filter_map(|(name, what)| find(all, &g, name).map(|b| b.row(name).extra(*what)))
        .collect();
        let tg = format!("endpoint_throughput_{flavor}");
        if let Some(b) = find(all, &tg, "vended_endpoint_concurrent/64") {
            let per_call = b.median_ns / 64.0;
            rows.push(
                b.row("vended_endpoint_concurrent/64")
                    .no_ratio()
                    .extra(format!(
                        "64 concurrent calls: {} per call, {:.0} calls/s",
                        Unit::Nanos.human(per_call),
                        1e9 / per_call
                    )),
            );
        }
        targets.push(Target::ratio_at_most(
            &format!("round trip within 2× of the echo ({flavor})"),
            median(all, &g, "vended_endpoint_call"),
            median(all, &g, "unix_socket_echo_baseline"),
            2.0,
            "echo",
        ));
        tables.push(Table {
            title: format!("Runtime flavour `{flavor}`:"),
            rows,
            baseline: Some("unix_socket_echo_baseline".into()),
        });
    }
    // Stray results of other groups are still shown rather than dropped.
    let known = |g: &str| {
        g.starts_with("endpoint_")
            || g == "attach_bridge"
            || g == "round_trip"
            || g == "gc_10000"
            || g == "gc_none_stale"
    };
    let others: Vec<Row> = all
        .iter()
        .filter(|b| !known(&b.group))
        .map(|b| b.row(&format!("{}/{}", b.group, b.name)).no_ratio())
        .collect();
    if !others.is_empty() {
        tables.push(Table {
            title: "Other criterion benchmarks of the workspace:".into(),
            rows: others,
            baseline: None,
        });
    }
    Section {
        title: "Endpoint round trip".into(),
        method: "Criterion (`crates/protocol/benches/endpoint.rs`): one small call over a \
                 vended endpoint against a plain Unix socket echo of the same payload, on each \
                 tokio flavour the project uses (current-thread: helpers and CLI; multi-thread: \
                 apiserver)."
            .into(),
        notes: notes(ctx, Entry::Endpoint, &tables),
        tables,
        targets,
    }
}
