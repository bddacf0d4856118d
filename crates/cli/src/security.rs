//! The confinement flags of `run` and `create`, as Docker and Podman spell them. The
//! CLI reads a `seccomp=FILE` profile itself (the apiserver may not see the caller's
//! files) and sends it whole; the apiserver checks every value and records the
//! effective settings.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use container_protocol::security::{SeccompConfig, SecurityConfig};

#[derive(Args, Clone, Default)]
pub struct SecurityArgs {
    /// Add a capability (CAP_NET_ADMIN, NET_ADMIN, or ALL; repeatable, or comma-separated).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (as --cap-add; ALL keeps only those added).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Every capability, no seccomp filter, no masked or read-only paths, a writable
    /// /sys and the host's devices: the container can do what root on the host does.
    #[arg(long)]
    pub privileged: bool,
    /// no-new-privileges[=true|false], seccomp=FILE|unconfined, systempaths=unconfined
    /// (repeatable).
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opts: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Size of /dev/shm (64k, 64m, 1g; default 64m).
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// No root filesystem: the workload runs on this host's own files (its own /proc,
    /// the runtime's state hidden). Anything it writes there is written on the host.
    #[arg(long = "host-rootfs", conflicts_with = "rootfs")]
    pub host_rootfs: bool,
}

fn split(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// `true`/`false` as Docker's `no-new-privileges=` takes them.
fn boolean(opt: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("invalid --security-opt {opt:?}: {v:?} is not true or false"),
    }
}

impl SecurityArgs {
    /// The flags over `base` (the defaults, or a `--config` file's settings).
    pub fn apply(&self, mut s: SecurityConfig) -> Result<SecurityConfig> {
        s.cap_add.extend(split(&self.cap_add));
        s.cap_drop.extend(split(&self.cap_drop));
        s.privileged |= self.privileged;
        s.read_only |= self.read_only;
        s.host_rootfs |= self.host_rootfs;
        if let Some(size) = &self.shm_size {
            s.shm_size = crate::container::parse_size(size)
                .ok_or_else(|| anyhow!("invalid --shm-size {size:?}: not a size (64k, 64m, 1g)"))?;
        }
        for opt in &self.security_opts {
            // Docker's older `key:value` spelling too.
            let (key, value) = match opt.split_once(['=', ':']) {
                Some((k, v)) => (k, Some(v)),
                None => (opt.as_str(), None),
            };
            match (key, value) {
                ("no-new-privileges", None) => s.no_new_privileges = Some(true),
                ("no-new-privileges", Some(v)) => s.no_new_privileges = Some(boolean(opt, v)?),
                ("seccomp", Some("unconfined")) => s.seccomp = SeccompConfig::Unconfined,
                ("seccomp", Some(file)) if !file.is_empty() => {
                    s.seccomp = read_profile(file)?;
                }
                ("systempaths", Some("unconfined")) => {
                    s.masked_paths.clear();
                    s.readonly_paths.clear();
                }
                // What this runtime does not apply cannot be asked to be turned off
                // more: accepted, as scripts written for Docker and Podman pass them.
                ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
                ("apparmor" | "label", _) => bail!(
                    "invalid --security-opt {opt:?}: this runtime applies no AppArmor or SELinux policy (only apparmor=unconfined and label=disable are accepted)"
                ),
                _ => bail!(
                    "invalid --security-opt {opt:?}: use no-new-privileges[=true|false], seccomp=FILE, seccomp=unconfined or systempaths=unconfined"
                ),
            }
        }
        Ok(s)
    }
}

/// A profile file, read whole: the apiserver checks and compiles it.
fn read_profile(file: &str) -> Result<SeccompConfig> {
    let path = PathBuf::from(file);
    let profile = std::fs::read_to_string(&path)
        .with_context(|| format!("--security-opt seccomp={file}: read the profile"))?;
    let source = std::fs::canonicalize(&path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| file.to_string());
    Ok(SeccompConfig::Profile { source, profile })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(opts: &[&str]) -> SecurityArgs {
        SecurityArgs {
            security_opts: opts.iter().map(|s| s.to_string()).collect(),
            ..SecurityArgs::default()
        }
    }

    #[test]
    fn security_opts_read_as_docker_spells_them() {
        let s = args(&["no-new-privileges"])
            .apply(SecurityConfig::default())
            .unwrap();
        assert_eq!(s.no_new_privileges, Some(true));
        let s = args(&["no-new-privileges:false"])
            .apply(SecurityConfig::default())
            .unwrap();
        assert_eq!(s.no_new_privileges, Some(false));
        let s = args(&["seccomp=unconfined", "systempaths=unconfined"])
            .apply(SecurityConfig::default())
            .unwrap();
        assert_eq!(s.seccomp, SeccompConfig::Unconfined);
        assert!(s.masked_paths.is_empty() && s.readonly_paths.is_empty());
        for bad in [
            "no-new-privileges=maybe",
            "seccomp=",
            "selinux=x",
            "apparmor=docker-default",
        ] {
            let e = args(&[bad]).apply(SecurityConfig::default()).unwrap_err();
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
        let e = args(&["seccomp=/nonexistent.json"])
            .apply(SecurityConfig::default())
            .unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent.json"), "{e:#}");
    }

    #[test]
    fn capabilities_may_come_comma_separated() {
        let a = SecurityArgs {
            cap_add: vec!["net_admin,SYS_TIME".into(), "CAP_KILL".into()],
            ..SecurityArgs::default()
        };
        let s = a.apply(SecurityConfig::default()).unwrap();
        assert_eq!(s.cap_add, ["net_admin", "SYS_TIME", "CAP_KILL"]);
    }
}
