//! `cargo xtask fuzz [TARGET] [--seconds N]`: runs the cargo-fuzz targets under `fuzz/`
//! (the frame decoder and the config parsers), each for N seconds (default 60).
//!
//! Not part of `cargo xtask test` or CI: libFuzzer needs a nightly toolchain and
//! `cargo-fuzz`. CI runs the stable stand-in instead, the `*_survive_pseudo_random_*`
//! tests in `tests/tests/bad_input.rs`.
//!
//! Each target keeps its growing corpus in `fuzz/corpus/<target>/` and starts from the
//! checked-in seeds in `fuzz/seeds/<target>/`. A crash leaves its input in
//! `fuzz/artifacts/<target>/`; replay it with
//! `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const DEFAULT_SECONDS: u64 = 60;

fn fuzz_dir() -> PathBuf {
    crate::workspace().join("fuzz")
}

/// Target names: the files in `fuzz/fuzz_targets/`.
fn targets(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("fuzz_targets"))
        .with_context(|| format!("read {}", dir.join("fuzz_targets").display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".rs"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    Ok(names)
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

/// Nightly and cargo-fuzz, or a message saying what is missing and how to get it.
fn check_tools() -> Result<()> {
    let nightly = succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]));
    if !nightly {
        bail!(
            "fuzzing needs a nightly toolchain (libFuzzer and -Zsanitizer), and there is none: \
             `rustup toolchain install nightly`, then `cargo install cargo-fuzz`. \
             Without them the stable stand-in still runs: \
             `cargo test -p container-tests --test bad_input survive_pseudo_random`"
        );
    }
    let cargo_fuzz = succeeds(Command::new("cargo").args(["+nightly", "fuzz", "--version"]));
    if !cargo_fuzz {
        bail!(
            "fuzzing needs cargo-fuzz, which is not installed (nightly is): \
             `cargo install cargo-fuzz`"
        );
    }
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a number")?;
                seconds = v
                    .parse()
                    .with_context(|| format!("--seconds {v:?} is not a number"))?;
            }
            "-h" | "--help" => {
                println!("usage: cargo xtask fuzz [TARGET] [--seconds N]   (default {DEFAULT_SECONDS} s per target)");
                return Ok(());
            }
            other if other.starts_with('-') => bail!("unknown option {other:?}"),
            other => {
                if only.replace(other.to_string()).is_some() {
                    bail!("give one target at most");
                }
            }
        }
    }
    let dir = fuzz_dir();
    let all = targets(&dir)?;
    let chosen: Vec<String> = match only {
        Some(t) if all.contains(&t) => vec![t],
        Some(t) => bail!("unknown fuzz target {t:?}: use one of {}", all.join(", ")),
        None => all,
    };
    check_tools()?;

    let mut crashed = Vec::new();
    for target in &chosen {
        let corpus = dir.join("corpus").join(target);
        let seeds = dir.join("seeds").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let mut cmd = Command::new("cargo");
        cmd.current_dir(crate::workspace())
            .args(["+nightly", "fuzz", "run", target])
            .arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        // The fuzz crate is its own workspace with its own target dir; a CARGO_TARGET_DIR
        // meant for the main workspace would mix sanitizer builds into it.
        cmd.env_remove("CARGO_TARGET_DIR")
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048");
        let status = cmd
            .status()
            .with_context(|| format!("run cargo fuzz {target}"))?;
        if !status.success() {
            crashed.push(target.clone());
        }
    }
    if !crashed.is_empty() {
        bail!(
            "fuzzing found a failure in {}: the inputs are in {}",
            crashed.join(", "),
            dir.join("artifacts").display()
        );
    }
    eprintln!("xtask: {} target(s) fuzzed, nothing found", chosen.len());
    Ok(())
}
