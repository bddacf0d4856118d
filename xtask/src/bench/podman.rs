//! Podman as the `run` entry compares with it and the `scale` entry weighs its conmon:
//! every root, runroot and temporary directory under the bench's state, the busybox
//! root filesystem imported as an image (`podman import`).
//!
//! On these machines podman needs `--cgroup-manager=cgroupfs --runtime runc` and
//! `default_ulimits = []` (no CAP_SYS_RESOURCE, hybrid cgroups). Rather than writing
//! `/etc/containers/containers.conf`, the bench points `CONTAINERS_CONF` at a file of
//! its own, so the host's configuration is neither needed nor touched.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use super::sys::{self, Mem};
use super::Ctx;

pub const IMAGE: &str = "localhost/container-bench-busybox";

pub struct Podman {
    conf: PathBuf,
    root: PathBuf,
    runroot: PathBuf,
    driver: &'static str,
    /// `netavark` or `cni`, as `podman info` reports it.
    pub backend: String,
}

fn helper(name: &str) -> bool {
    ["/usr/libexec/podman", "/usr/lib/podman"]
        .iter()
        .any(|d| std::path::Path::new(d).join(name).exists())
}

impl Podman {
    /// Writes the configuration and imports the image; an error says why podman cannot
    /// be measured here (the report shows it instead of podman's rows).
    pub fn prepare(ctx: &Ctx) -> Result<Podman, String> {
        Self::try_prepare(ctx).map_err(|e| format!("{e:#}"))
    }

    fn try_prepare(ctx: &Ctx) -> Result<Podman> {
        if !std::path::Path::new("/usr/bin/podman").exists() {
            anyhow::bail!("podman is not installed");
        }
        let dir = ctx.state.join("podman");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let backend = if helper("netavark") {
            "netavark"
        } else {
            "cni"
        };
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                "[containers]\n\
                 default_ulimits = []\n\
                 log_driver = \"k8s-file\"\n\
                 \n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 runtime = \"runc\"\n\
                 events_logger = \"file\"\n\
                 tmp_dir = \"{tmp}\"\n\
                 image_copy_tmp_dir = \"{tmp}\"\n\
                 \n\
                 [network]\n\
                 network_backend = \"{backend}\"\n\
                 network_config_dir = \"{net}\"\n",
                tmp = tmp.display(),
                net = dir.join("networks").display(),
            ),
        )?;
        let rootfs = sys::rootfs(&ctx.state)?;
        let tar = dir.join("rootfs.tar");
        sys::output(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        )?;
        let mut last = None;
        // overlay is what podman users run; vfs (a copy per container) where overlay
        // cannot mount, e.g. on an overlay filesystem.
        for driver in ["overlay", "vfs"] {
            let p = Podman {
                conf: conf.clone(),
                root: dir.join(format!("root-{driver}")),
                runroot: dir.join(format!("run-{driver}")),
                driver,
                backend: backend.into(),
            };
            match sys::output(p.cmd().arg("import").arg(&tar).arg(IMAGE)) {
                Ok(_) => {
                    if driver != "overlay" {
                        ctx.notes.add(
                            "run",
                            &format!(
                                "podman: overlay storage failed ({}); used vfs",
                                last.unwrap_or_default()
                            ),
                        );
                    }
                    let info =
                        sys::output(
                            p.cmd()
                                .args(["info", "--format", "{{.Host.NetworkBackend}}"]),
                        )
                        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                        .unwrap_or_else(|_| backend.to_string());
                    return Ok(Podman { backend: info, ..p });
                }
                Err(e) => last = Some(format!("{e:#}")),
            }
        }
        Err(anyhow::anyhow!(
            "podman import failed: {}",
            last.unwrap_or_default()
        ))
    }

    /// `podman` with the bench's roots and the flags these machines need.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", &self.conf)
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .args(["--storage-driver", self.driver])
            .args(["--cgroup-manager", "cgroupfs", "--runtime", "runc"]);
        cmd
    }

    /// `podman run --rm --network podman IMAGE true`.
    pub fn run_true(&self) -> Result<()> {
        sys::output(
            self.cmd()
                .args(["run", "--rm", "--network", "podman", IMAGE, "true"]),
        )
        .map(|_| ())
    }

    /// Starts `k` detached containers, returns each one's conmon memory, removes them.
    pub fn conmon_mem(&self, k: usize) -> Result<Vec<Mem>> {
        let mut ids = Vec::new();
        let result = (|| -> Result<Vec<Mem>> {
            for _ in 0..k {
                let out = sys::output(self.cmd().args([
                    "run",
                    "-d",
                    "--network",
                    "podman",
                    IMAGE,
                    "sleep",
                    "1000",
                ]))?;
                ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
            }
            let mut mems = Vec::new();
            for id in &ids {
                let out = sys::output(self.cmd().args([
                    "inspect",
                    "--format",
                    "{{.State.ConmonPid}}",
                    id,
                ]))?;
                let pid: u32 = String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .context("conmon pid")?;
                mems.push(sys::mem(pid)?);
            }
            Ok(mems)
        })();
        if !ids.is_empty() {
            let _ = sys::output(self.cmd().args(["rm", "-f", "-t", "0"]).args(&ids));
        }
        result
    }

    /// Removes every container this podman made (the PID namespace would kill them
    /// anyway; this lets podman unmount and delete its cgroups).
    pub fn clean(&self) {
        let _ = sys::output(self.cmd().args(["rm", "-a", "-f", "-t", "0"]));
    }
}
