//! `cargo xtask demo`: the newcomer's first command. Builds everything, starts the
//! apiserver (unless a supervisor already runs it), makes a small busybox image here
//! (an OCI layout: the demo never reaches the internet) and loads it, creates a bridge
//! network, and runs the image on it: the container shows its interface and reaches
//! its gateway.
//!
//! `--isolated` does all of it inside a private network and mount namespace with a
//! temporary state tree, leaving the machine exactly as it was.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, run as sh, workspace};

const NETWORK: &str = "demo";
const IMAGE: &str = "localhost/demo-busybox:latest";

fn bin(name: &str) -> PathBuf {
    workspace().join("target/debug").join(name)
}

/// A busybox root filesystem under target/, from Debian's busybox-static.
fn rootfs() -> Result<PathBuf> {
    let root = workspace().join("target/demo-rootfs");
    for sub in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(sub))?;
    }
    let busybox = root.join("bin/busybox");
    if !busybox.exists() {
        std::fs::copy("/bin/busybox", &busybox).context("copy /bin/busybox")?;
    }
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    Ok(root)
}

fn container(env: &[(String, PathBuf)], args: &[&str]) -> Result<String> {
    eprintln!("+ container {}", args.join(" "));
    let out = Command::new(bin("container"))
        .envs(env.iter().cloned())
        .args(args)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("container {} failed: {}", args.join(" "), out.status);
    }
    Ok(stdout)
}

pub fn run(rest: &[String]) -> Result<()> {
    crate::deps()?;
    // Not xtask itself: rebuilding the running binary would pull it from under us.
    sh(cargo().args(["build", "--workspace", "--bins", "--exclude", "xtask"]))?;
    let rootfs = rootfs()?;
    if rest.iter().any(|a| a == "--isolated") {
        // Re-run ourselves in fresh namespaces; `unshare` comes with util-linux.
        let tmp = std::env::temp_dir().join(format!("container-demo-{}", std::process::id()));
        let status = Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "--"])
            .arg(std::env::current_exe()?)
            .args(["demo-inner", "--state"])
            .arg(&tmp)
            .arg("--rootfs")
            .arg(&rootfs)
            .status()?;
        let _ = std::fs::remove_dir_all(&tmp);
        if !status.success() {
            bail!("isolated demo failed: {status}");
        }
        return Ok(());
    }
    main_job(&[], &rootfs)
}

/// Entry point inside the private namespaces of `--isolated`.
pub fn inner(rest: &[String]) -> Result<()> {
    let arg = |name: &str| -> Result<PathBuf> {
        rest.iter()
            .position(|a| a == name)
            .and_then(|i| rest.get(i + 1))
            .map(PathBuf::from)
            .with_context(|| format!("{name} missing"))
    };
    let state = arg("--state")?;
    let rootfs = arg("--rootfs")?;
    sh(Command::new("ip").args(["link", "set", "lo", "up"]))?;
    // cgroups are not namespaced: a parent of the demo's own, removed at its end, so
    // the host keeps no `container` cgroup the demo made.
    let cgroups = format!("container-demo-{}", std::process::id());
    let env = vec![
        ("CONTAINER_ROOT".to_string(), state.join("root")),
        ("CONTAINER_RUN_DIR".to_string(), state.join("run")),
        (
            "CONTAINER_CGROUP_PARENT".to_string(),
            PathBuf::from(&cgroups),
        ),
    ];
    let result = main_job(&env, &rootfs);
    let _ = container(&env, &["system", "stop"]);
    if let Ok(layout) = container_cgroups::Layout::detect() {
        if let Err(e) = container_cgroups::remove_tree(&layout, &cgroups) {
            eprintln!("xtask: remove cgroup {cgroups}: {e}");
        }
    }
    result
}

fn main_job(env: &[(String, PathBuf)], rootfs: &Path) -> Result<()> {
    container(env, &["system", "start"])?;
    let networks = container(env, &["network", "ls", "-q"])?;
    if !networks.lines().any(|l| l == NETWORK) {
        container(env, &["network", "create", NETWORK])?;
    }
    // The image: one layer, the busybox root filesystem, as an OCI layout.
    let layout = workspace().join("target/demo-image");
    crate::oci::layout(
        &layout,
        &[rootfs.to_path_buf()],
        serde_json::json!({"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hello"], "Env": ["PATH=/bin"]}),
        IMAGE,
    )?;
    container(
        env,
        &["image", "load", "-q", "-i", &layout.display().to_string()],
    )?;
    container(env, &["image", "ls"])?;
    container(
        env,
        &[
            "run", "--rm", "--network", NETWORK, IMAGE,
            "echo \"hello from $(hostname)\"; ip -4 addr show eth0 | grep inet; \
             gw=$(ip route | awk '/default/ {print $3}'); ping -c 1 -W 2 $gw && echo \"reached gateway $gw\"",
        ],
    )?;
    container(env, &["system", "status"])?;
    Ok(())
}
