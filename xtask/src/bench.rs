//! `cargo xtask bench`: runs every criterion benchmark of the workspace and writes
//! `docs/benchmarks.md` with medians, spread and the ratio of each entry to the baseline
//! of its group (a benchmark whose name contains "baseline"), all measured in one run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::{cargo, run as sh, workspace};

struct Entry {
    group: String,
    name: String,
    median_ns: f64,
    mad_ns: f64,
}

pub fn run(rest: &[String]) -> Result<()> {
    crate::deps()?;
    sh(cargo().args(["build", "--workspace", "--bins", "--release"]))?;
    let criterion = workspace().join("target/criterion");
    let _ = std::fs::remove_dir_all(&criterion);
    sh(cargo().args(["bench", "--workspace"]).arg("--").args(rest))?;
    let entries = collect(&criterion)?;
    let report = render(&entries);
    print!("{report}");
    let out = workspace().join("docs/benchmarks.md");
    let mut doc = std::fs::read_to_string(&out).unwrap_or_default();
    const START: &str = "<!-- bench:start -->";
    const END: &str = "<!-- bench:end -->";
    let block = format!("{START}\n{report}{END}");
    match (doc.find(START), doc.find(END)) {
        (Some(a), Some(b)) if b > a => doc.replace_range(a..b + END.len(), &block),
        _ => {
            doc.push('\n');
            doc.push_str(&block);
            doc.push('\n');
        }
    }
    std::fs::write(&out, doc).with_context(|| format!("write {}", out.display()))?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

fn collect(dir: &Path) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(list) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in list.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    if let Some(entry) = read_entry(&p) {
                        entries.push(entry);
                    }
                } else {
                    stack.push(p);
                }
            }
        }
    }
    entries.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
    Ok(entries)
}

fn read_entry(new: &Path) -> Option<Entry> {
    let bench: serde_json::Value =
        serde_json::from_slice(&std::fs::read(new.join("benchmark.json")).ok()?).ok()?;
    let est: serde_json::Value =
        serde_json::from_slice(&std::fs::read(new.join("estimates.json")).ok()?).ok()?;
    let group = bench["group_id"].as_str()?.to_string();
    let mut name = bench["function_id"].as_str().unwrap_or("").to_string();
    if let Some(v) = bench["value_str"].as_str() {
        name = format!("{name}/{v}");
    }
    Some(Entry {
        group,
        name,
        median_ns: est["median"]["point_estimate"].as_f64()?,
        mad_ns: est["median_abs_dev"]["point_estimate"]
            .as_f64()
            .unwrap_or(0.0),
    })
}

fn human(ns: f64) -> String {
    match ns {
        n if n >= 1e9 => format!("{:.2} s", n / 1e9),
        n if n >= 1e6 => format!("{:.2} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.2} µs", n / 1e3),
        n => format!("{n:.0} ns"),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}, {date}")
}

fn render(entries: &[Entry]) -> String {
    let mut groups: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in entries {
        groups.entry(&e.group).or_default().push(e);
    }
    let mut out = String::new();
    let _ = writeln!(out, "Measured by `cargo xtask bench` on {}.\n", machine());
    let _ = writeln!(out, "| group | benchmark | median | ± MAD | × baseline |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (group, list) in groups {
        let baseline = list
            .iter()
            .find(|e| e.name.contains("baseline"))
            .map(|e| e.median_ns);
        for e in list {
            let ratio = match baseline {
                Some(b) if b > 0.0 => format!("{:.2}", e.median_ns / b),
                _ => "—".into(),
            };
            let _ = writeln!(
                out,
                "| {group} | {} | {} | {} | {ratio} |",
                e.name,
                human(e.median_ns),
                human(e.mad_ns)
            );
        }
    }
    out
}
