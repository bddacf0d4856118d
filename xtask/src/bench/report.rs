//! The report: sections of tables with medians, spread and ratios to the baseline of
//! each table, the targets with whether they are met, and notes on whatever
//! could not be measured. Rendered as Markdown, for stdout and `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::stats;
use super::Options;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Nanos,
    Bytes,
}

impl Unit {
    pub fn human(self, v: f64) -> String {
        if !v.is_finite() {
            return "—".into();
        }
        match self {
            Unit::Nanos => match v {
                n if n >= 1e9 => format!("{:.2} s", n / 1e9),
                n if n >= 1e6 => format!("{:.2} ms", n / 1e6),
                n if n >= 1e3 => format!("{:.2} µs", n / 1e3),
                n => format!("{n:.0} ns"),
            },
            Unit::Bytes => match v {
                b if b >= 1024.0 * 1024.0 => format!("{:.2} MiB", b / (1024.0 * 1024.0)),
                b if b >= 1024.0 => format!("{:.0} KiB", b / 1024.0),
                b => format!("{b:.0} B"),
            },
        }
    }
}

pub struct Row {
    pub name: String,
    pub median: f64,
    /// p10 and p90 of the samples, when there are several.
    pub band: Option<(f64, f64)>,
    pub samples: Option<usize>,
    pub unit: Unit,
    /// Compared with the table's baseline (rows of another metric are not).
    pub ratio: bool,
    pub extra: String,
}

impl Row {
    pub fn from_samples(name: impl Into<String>, unit: Unit, samples: &[f64]) -> Row {
        Row {
            name: name.into(),
            median: stats::median(samples),
            band: (samples.len() > 1).then(|| {
                (
                    stats::percentile(samples, 10.0),
                    stats::percentile(samples, 90.0),
                )
            }),
            samples: Some(samples.len()),
            unit,
            ratio: true,
            extra: String::new(),
        }
    }

    pub fn single(name: impl Into<String>, unit: Unit, value: f64) -> Row {
        Row {
            name: name.into(),
            median: value,
            band: None,
            samples: None,
            unit,
            ratio: true,
            extra: String::new(),
        }
    }

    pub fn extra(mut self, text: impl Into<String>) -> Row {
        self.extra = text.into();
        self
    }

    pub fn no_ratio(mut self) -> Row {
        self.ratio = false;
        self
    }
}

pub struct Table {
    pub title: String,
    pub rows: Vec<Row>,
    /// Name of the row the others are divided by.
    pub baseline: Option<String>,
}

impl Table {
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }
}

pub struct Target {
    pub what: String,
    /// What was measured against it, e.g. "0.42 × CNI".
    pub measured: String,
    /// `None`: could not be checked (a side is missing).
    pub met: Option<bool>,
}

impl Target {
    /// A target on `ours / theirs`: met when the ratio is at most `limit`.
    pub fn ratio_at_most(
        what: &str,
        ours: Option<f64>,
        theirs: Option<f64>,
        limit: f64,
        of: &str,
    ) -> Target {
        match (ours, theirs) {
            (Some(a), Some(b)) if a.is_finite() && b.is_finite() && b > 0.0 => {
                let r = a / b;
                Target {
                    what: what.into(),
                    measured: format!("{} × {of}", ratio_text(r)),
                    met: Some(r <= limit),
                }
            }
            _ => Target {
                what: what.into(),
                measured: format!("not measured ({of} or ours missing)"),
                met: None,
            },
        }
    }
}

/// Two decimals, or two significant digits for a ratio that would print as 0.00.
fn ratio_text(r: f64) -> String {
    if r >= 0.095 || r <= 0.0 || !r.is_finite() {
        return format!("{r:.2}");
    }
    let decimals = (-r.log10()).ceil() as usize + 1;
    format!("{r:.decimals$}")
}

pub struct Section {
    pub title: String,
    /// How the entry is measured, in a sentence or three.
    pub method: String,
    pub tables: Vec<Table>,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
}

fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "unknown",
    }
}

pub fn render(machine: &str, opts: &Options, general: &[String], sections: &[Section]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Measured by `cargo xtask bench` on {machine}.");
    if opts.quick {
        let _ = writeln!(
            out,
            "\n**Quick run** (`--quick`): a few iterations each, a smoke test, not numbers to compare."
        );
    }
    let _ = writeln!(
        out,
        "\nThe machine is shared with other engineers' builds, so absolute times are noisy; \
         every ratio is between rows measured in the same run, minutes apart. Medians, with \
         the p10–p90 band of the samples (criterion: per-iteration means of its samples; \
         timing loops: one wall-clock time per command).\n"
    );

    for n in general {
        let _ = writeln!(out, "- {n}");
    }
    if !general.is_empty() {
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "| entry | target | measured | met |");
    let _ = writeln!(out, "|---|---|---|---|");
    for s in sections {
        for t in &s.targets {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                s.title,
                t.what,
                t.measured,
                mark(t.met)
            );
        }
    }

    for s in sections {
        let _ = writeln!(out, "\n### {}\n\n{}", s.title, s.method);
        for t in &s.tables {
            render_table(&mut out, t);
        }
        if !s.notes.is_empty() {
            let _ = writeln!(out);
            for n in &s.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
    }
    out
}

fn render_table(out: &mut String, t: &Table) {
    let base = t
        .baseline
        .as_deref()
        .and_then(|b| t.row(b))
        .filter(|r| r.median.is_finite() && r.median > 0.0);
    let _ = writeln!(out, "\n{}\n", t.title);
    let _ = writeln!(
        out,
        "| benchmark | median | p10 – p90 | samples | × baseline | |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for r in &t.rows {
        let band = r
            .band
            .map(|(lo, hi)| format!("{} – {}", r.unit.human(lo), r.unit.human(hi)))
            .unwrap_or_else(|| "—".into());
        let samples = r
            .samples
            .map(|n| n.to_string())
            .unwrap_or_else(|| "1".into());
        let ratio = match base {
            Some(b) if r.ratio && b.unit == r.unit && r.median.is_finite() => {
                ratio_text(r.median / b.median)
            }
            _ => "—".into(),
        };
        let name = if Some(r.name.as_str()) == t.baseline.as_deref() {
            format!("{} (baseline)", r.name)
        } else {
            r.name.clone()
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {band} | {samples} | {ratio} | {} |",
            r.unit.human(r.median),
            r.extra
        );
    }
}

/// Replaces what lies between the bench markers of `path` with `report`, keeping the
/// prose around them.
pub fn write_docs(path: &Path, report: &str) -> Result<()> {
    const START: &str = "<!-- bench:start -->";
    const END: &str = "<!-- bench:end -->";
    let mut doc = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{START}\n{report}{END}");
    match (doc.find(START), doc.find(END)) {
        (Some(a), Some(b)) if b > a => doc.replace_range(a..b + END.len(), &block),
        _ => {
            doc.push('\n');
            doc.push_str(&block);
            doc.push('\n');
        }
    }
    std::fs::write(path, doc).with_context(|| format!("write {}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}
