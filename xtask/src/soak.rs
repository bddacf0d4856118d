//! `cargo xtask soak [--iterations N] [--seed S]`: the random-SIGKILL crash test of
//! `tests/tests/faults.rs`, longer than CI runs it.

use anyhow::{bail, Result};

use crate::{cargo, run as sh};

pub fn run(rest: &[String]) -> Result<()> {
    let mut iterations = "200".to_string();
    let mut seed = None;
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--iterations" => iterations = it.next().cloned().unwrap_or_default(),
            "--seed" => seed = it.next().cloned(),
            other => bail!("unknown soak flag {other:?}: use --iterations N, --seed S"),
        }
    }
    if iterations.parse::<u64>().is_err() {
        bail!("--iterations takes a number");
    }
    crate::deps()?;
    sh(cargo().args(["build", "--workspace", "--bins", "--exclude", "xtask"]))?;
    let mut cmd = cargo();
    cmd.args([
        "test",
        "-p",
        "container-tests",
        "--test",
        "faults",
        "random_sigkills",
        "--",
        "--nocapture",
    ])
    .env("SOAK_ITERATIONS", &iterations);
    if let Some(seed) = seed {
        cmd.env("SOAK_SEED", seed);
    }
    sh(&mut cmd)
}
