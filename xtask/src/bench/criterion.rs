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

pub fn ipam_section(all: &[Bench], ctx: &Ctx) -> Section {
    let mut tables = Vec::new();
    let mut targets = Vec::new();
    for n in ["100", "10000"] {
        let ours = format!("ours/{n}");
        let theirs = format!("host-local/{n}");
        let rows: Vec<Row> = [(&theirs, "host-local binary"), (&ours, "container-ipam")]
            .iter()
            .filter_map(|(name, what)| {
                find(all, "round_trip", name).map(|b| {
                    b.row(name)
                        .extra(format!("{what}, {:.0} allocations/s", 1e9 / b.median_ns))
                })
            })
            .collect();
        targets.push(Target::ratio_at_most(
            &format!("faster than host-local ({n} reservations)"),
            median(all, "round_trip", &ours),
            median(all, "round_trip", &theirs),
            1.0,
            "host-local",
        ));
        tables.push(Table {
            title: format!("Allocate + release one address, {n} reservations already on disk:"),
            rows,
            baseline: Some(theirs),
        });
    }
    let gc_rows = [
        (
            "all_stale",
            "10,000 reservations, all stale: lists, reads and removes them",
        ),
        ("half_stale", "5,000 of 10,000 stale"),
        (
            "none_stale",
            "none stale: the check at every apiserver start",
        ),
    ]
    .iter()
    .filter_map(|(name, what)| find(all, "gc_10000", name).map(|b| b.row(name).extra(*what)))
    .collect();
    tables.push(Table {
        title: "GC of 10,000 reservations (host-local has no GC to compare with):".into(),
        rows: gc_rows,
        baseline: None,
    });
    Section {
        title: "IPAM".into(),
        method: "Criterion (`crates/ipam/benches/ipam.rs`): allocate+release through \
                 `container-ipam` against the CNI `host-local` binary (ADD then DEL, two \
                 processes) on the same directory layout, and GC time; files on the real \
                 filesystem under the temp dir."
            .into(),
        notes: notes(ctx, Entry::Ipam, &tables),
        tables,
        targets,
    }
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
        g.starts_with("endpoint_") || g == "attach_bridge" || g == "round_trip" || g == "gc_10000"
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
