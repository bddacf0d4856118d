//! `cargo xtask demo`: the newcomer's first command. Builds everything, starts the
//! apiserver (unless a supervisor already runs it) and shows it answering.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::{cargo, run as sh, workspace};

fn bin(name: &str) -> PathBuf {
    workspace().join("target/debug").join(name)
}

fn container(args: &[&str]) -> Result<()> {
    eprintln!("+ container {}", args.join(" "));
    sh(Command::new(bin("container")).args(args))
}

pub fn run(_rest: &[String]) -> Result<()> {
    crate::deps()?;
    sh(cargo().args(["build", "--workspace", "--bins"]))?;
    container(&["system", "start"])?;
    container(&["system", "status"])?;
    Ok(())
}
