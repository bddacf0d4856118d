//! `cargo xtask bench`: this runtime beside the peers users would pick instead
//! (reference CNI plugins, netavark, podman, runc, `ip` itself), measured in one run on
//! one machine, printed as a table and written into `docs/benchmarks.md`.
//!
//! Entries (`--only NAME[,NAME]`): `attach` (criterion, `crates/sandbox-helper/benches`),
//! `run` and `scale` (timing loops here: whole processes are awkward in criterion),
//! `images` (pull, unpack and run of a generated image from a loopback registry),
//! `ipam` and `endpoint` (the crates' own criterion benches), `dns` (the name server
//! against aardvark-dns, driven by dnsperf), `cni` (container-cni against the reference
//! bridge + host-local plugins). `--quick` takes few
//! iterations, for a smoke run; `--scale N` sets the scale entry's container count.
//!
//! How a run is laid out, and why:
//! * on the host: install the Debian packages compared against, build the product in
//!   release mode and the criterion benches (network access, if any, happens here);
//! * then xtask runs itself again as `bench-init` under `unshare` in new network, mount
//!   and PID namespaces. `bench-init` hides /run, /dev/shm and /var/lib behind tmpfs
//!   (podman writes lock, netns and cache files there whatever its flags say), starts
//!   `bench-inner`, and reaps orphans as a PID 1 must. When it exits, the kernel kills
//!   whatever is left in the PID namespace: no container, conmon or helper outlives the
//!   bench, and no link, route or firewall rule ever reached the host's namespaces;
//! * `bench-inner` measures, with all state in a temporary directory, and writes the
//!   report under `<target>/bench/`;
//! * back on the host: print the report, splice it into `docs/benchmarks.md` (full runs
//!   only, or with `--docs`), remove the state directory and the cgroups podman left.

mod cni;
mod criterion;
mod deps;
mod dns;
mod images;
mod plot;
mod podman;
mod report;
mod run;
mod scale;
mod stats;
mod sys;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, run as sh, workspace};

/// The entries of the report, in the order they run and appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Attach,
    Run,
    Scale,
    Ipam,
    Endpoint,
    Images,
    Dns,
    Cni,
}

pub const ENTRIES: [(Entry, &str); 8] = [
    (Entry::Attach, "attach"),
    (Entry::Run, "run"),
    (Entry::Scale, "scale"),
    (Entry::Ipam, "ipam"),
    (Entry::Endpoint, "endpoint"),
    (Entry::Images, "images"),
    (Entry::Dns, "dns"),
    (Entry::Cni, "cni"),
];

impl Entry {
    pub fn name(self) -> &'static str {
        ENTRIES
            .iter()
            .find(|(e, _)| *e == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub quick: bool,
    pub only: Vec<Entry>,
    pub scale: Option<usize>,
    /// Write docs/benchmarks.md even for a quick or partial run.
    pub docs: bool,
}

impl Options {
    /// Parses the bench flags; `--state DIR` is accepted (and returned) for the inner
    /// stages only.
    fn parse(args: &[String]) -> Result<(Options, Option<PathBuf>)> {
        let mut opts = Options::default();
        let mut state = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |flag: &str| {
                it.next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value"))
            };
            match arg.as_str() {
                "--quick" => opts.quick = true,
                "--docs" => opts.docs = true,
                "--scale" => {
                    let v = value("--scale")?;
                    let n: usize = v
                        .parse()
                        .with_context(|| format!("--scale {v:?}: not a number"))?;
                    if n == 0 || n > 4000 {
                        bail!("--scale {n}: give 1 to 4000 containers");
                    }
                    opts.scale = Some(n);
                }
                "--only" => {
                    for name in value("--only")?.split(',').filter(|s| !s.is_empty()) {
                        let Some((entry, _)) = ENTRIES.iter().find(|(_, n)| *n == name) else {
                            let known: Vec<&str> = ENTRIES.iter().map(|(_, n)| *n).collect();
                            bail!("--only {name:?}: unknown entry (known: {})", known.join(", "));
                        };
                        opts.only.push(*entry);
                    }
                }
                "--state" => state = Some(PathBuf::from(value("--state")?)),
                other => bail!(
                    "unknown bench flag {other:?}: use --quick, --only NAME[,NAME], --scale N, --docs"
                ),
            }
        }
        Ok((opts, state))
    }

    fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.quick {
            args.push("--quick".into());
        }
        if self.docs {
            args.push("--docs".into());
        }
        if let Some(n) = self.scale {
            args.extend(["--scale".into(), n.to_string()]);
        }
        if !self.only.is_empty() {
            let names: Vec<&str> = self.only.iter().map(|e| e.name()).collect();
            args.extend(["--only".into(), names.join(",")]);
        }
        args
    }

    pub fn wants(&self, entry: Entry) -> bool {
        self.only.is_empty() || self.only.contains(&entry)
    }

    /// A run whose numbers belong in the docs.
    fn full(&self) -> bool {
        !self.quick && self.only.is_empty()
    }

    pub fn scale_n(&self) -> usize {
        self.scale.unwrap_or(if self.quick { 20 } else { 1000 })
    }

    /// Iterations of a timing loop: `full` normally, a handful for `--quick`.
    pub fn iterations(&self, full: usize) -> usize {
        if self.quick {
            full.clamp(1, 5)
        } else {
            full
        }
    }
}

/// Where cargo puts build output: `$CARGO_TARGET_DIR` when set (relative to the
/// workspace, as cargo reads it), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace().join(dir),
        _ => workspace().join("target"),
    }
}

/// Release binaries of the product.
pub fn bins() -> PathBuf {
    target_dir().join("release")
}

fn report_path() -> PathBuf {
    target_dir().join("bench").join("report.md")
}

/// What the measuring stages share.
pub struct Ctx {
    pub opts: Options,
    /// Temporary state of this run: every root and runroot lives under it.
    pub state: PathBuf,
    pub notes: Notes,
}

impl Ctx {
    /// Where figures go: `docs/` for a run whose numbers belong in the docs, beside the
    /// report otherwise (`target/bench/`), where they outlive the run's state so a
    /// partial run's curve can be looked at, or copied into the docs with its numbers.
    pub fn figures_dir(&self) -> PathBuf {
        if self.opts.full() || self.opts.docs {
            crate::workspace().join("docs")
        } else {
            target_dir().join("bench")
        }
    }
}

/// Lines explaining what could not be measured, `entry: text`, in a file so that the
/// installer, the inner stages and the criterion benches (`BENCH_NOTES`) can all add.
#[derive(Clone)]
pub struct Notes(PathBuf);

impl Notes {
    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn add(&self, entry: &str, text: &str) {
        use std::io::Write as _;
        eprintln!("bench: {entry}: {text}");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)
        {
            let _ = writeln!(f, "{entry}: {text}");
        }
    }

    /// The notes of one entry.
    pub fn of(&self, entry: &str) -> Vec<String> {
        let prefix = format!("{entry}: ");
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }
}

/// `cargo xtask bench`, on the host.
pub fn run(rest: &[String]) -> Result<()> {
    let (opts, _) = Options::parse(rest)?;
    if !crate::nix_is_root() {
        bail!("the bench creates namespaces, links and containers: run it as root");
    }
    let state = std::env::temp_dir().join(format!("container-bench-{}", std::process::id()));
    std::fs::create_dir_all(&state).with_context(|| format!("create {}", state.display()))?;
    let notes = Notes(state.join("notes.txt"));
    let result = outer(&opts, &state, &notes);
    sys::remove_leftover_cgroups();
    if let Err(e) = std::fs::remove_dir_all(&state) {
        eprintln!("xtask: could not remove {}: {e}", state.display());
    }
    result
}

fn outer(opts: &Options, state: &Path, notes: &Notes) -> Result<()> {
    deps::install(notes)?;
    // Not xtask itself: rebuilding the running binary would pull it from under us.
    sh(cargo().args([
        "build",
        "--release",
        "--workspace",
        "--bins",
        "--exclude",
        "xtask",
    ]))?;
    let benches = criterion::selected(opts);
    if !benches.is_empty() {
        sh(cargo()
            .args(["bench", "--workspace", "--no-run"])
            .args(criterion::target_args(&benches)))?;
    }
    let _ = std::fs::remove_file(report_path());
    // PID namespace with --fork: bench-init is its PID 1 (see the module comment).
    let status = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            "--",
        ])
        .arg(std::env::current_exe()?)
        .arg("bench-init")
        .arg("--state")
        .arg(state)
        .args(opts.to_args())
        .status()
        .context("run unshare (util-linux)")?;
    let report = std::fs::read_to_string(report_path()).ok();
    if let Some(report) = &report {
        print!("{report}");
    }
    if !status.success() {
        bail!("the bench failed ({status}); see the messages above");
    }
    let Some(report) = report else {
        bail!("the bench wrote no report at {}", report_path().display());
    };
    if opts.full() || opts.docs {
        report::write_docs(&workspace().join("docs/benchmarks.md"), &report)?;
    } else {
        eprintln!(
            "xtask: partial or quick run: docs/benchmarks.md left as it was (--docs writes it); \
             report in {}",
            report_path().display()
        );
    }
    Ok(())
}

/// PID 1 of the bench's namespaces: hides the host's runtime directories, runs the
/// inner stage, reaps every orphan until it ends, and exits with its status.
pub fn init(rest: &[String]) -> Result<()> {
    // The mount namespace is private (unshare --propagation private): these mounts
    // never reach the host. /var/lib is where podman keeps its blob cache even when
    // told another root; nothing in the bench needs the host's /var/lib.
    for dir in ["/run", "/dev/shm", "/var/lib"] {
        sh(Command::new("mount").args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs", dir]))?;
    }
    let child = Command::new(std::env::current_exe()?)
        .arg("bench-inner")
        .args(rest)
        .spawn()
        .context("start bench-inner")?;
    let code = sys::reap_until(child.id());
    std::process::exit(code)
}

/// The measurements, inside the bench's namespaces.
pub fn inner(rest: &[String]) -> Result<()> {
    let (opts, state) = Options::parse(rest)?;
    let state = state.context("bench-inner needs --state")?;
    let notes = Notes(state.join("notes.txt"));
    let machine = sys::machine();
    sh(Command::new("ip").args(["link", "set", "lo", "up"]))?;
    let ctx = Ctx {
        opts: opts.clone(),
        state,
        notes,
    };

    let mut sections = Vec::new();
    let benches = criterion::selected(&opts);
    let criterion_results = if benches.is_empty() {
        Vec::new()
    } else {
        criterion::run(&ctx, &benches)
    };
    // Podman is shared by `run` (the comparison) and `scale` (conmon's memory).
    let podman = if opts.wants(Entry::Run) || opts.wants(Entry::Scale) || opts.wants(Entry::Images)
    {
        Some(podman::Podman::prepare(&ctx))
    } else {
        None
    };
    for (entry, _) in ENTRIES {
        if !opts.wants(entry) {
            continue;
        }
        eprintln!("bench: === {} ===", entry.name());
        let section = match entry {
            Entry::Attach => criterion::attach_section(&criterion_results, &ctx),
            Entry::Ipam => criterion::ipam_section(&criterion_results, &ctx),
            Entry::Endpoint => criterion::endpoint_section(&criterion_results, &ctx),
            Entry::Run => run::measure(&ctx, podman.as_ref()),
            Entry::Scale => scale::measure(&ctx, podman.as_ref()),
            Entry::Images => images::measure(&ctx, podman.as_ref()),
            Entry::Dns => dns::measure(&ctx),
            Entry::Cni => cni::measure(&ctx),
        };
        sections.push(section);
    }
    if let Some(Ok(p)) = &podman {
        p.clean();
    }
    let text = report::render(&machine, &opts, &ctx.notes.of("all"), &sections);
    let path = report_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
