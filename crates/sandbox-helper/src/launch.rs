//! What a process gets besides its plan: environment, stdio, and how its end reads.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio as StdStdio;

use container_protocol::container::LogConfig;
use container_protocol::sandbox::{ExitStatus, Stdio};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `KEY=VALUE` entries of `layers`, later layers overriding earlier ones, then the
/// defaults a container expects when nothing set them: PATH, HOSTNAME, HOME, and TERM
/// on a terminal. Entries without `=` are skipped.
pub fn environment(
    layers: &[&[String]],
    hostname: &str,
    user: &crate::plan::Credentials,
    tty: bool,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for entry in layers.iter().flat_map(|l| l.iter()) {
        let Some((k, v)) = entry.split_once('=') else {
            tracing::warn!("ignoring environment entry without '=': {entry:?}");
            continue;
        };
        match env.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        }
    }
    let mut defaults = vec![
        ("PATH", DEFAULT_PATH),
        ("HOSTNAME", hostname),
        ("HOME", user.home.as_str()),
    ];
    if tty {
        defaults.push(("TERM", "xterm"));
    }
    for (k, v) in defaults {
        if !env.iter().any(|(key, _)| key == k) {
            env.push((k.to_string(), v.to_string()));
        }
    }
    env
}

/// The three stdio ends of a child, and the pty master to hand back for `Tty`.
pub struct Wiring {
    pub stdin: StdStdio,
    pub stdout: StdStdio,
    pub stderr: StdStdio,
    pub master: Option<OwnedFd>,
}

/// Wires stdio as asked: the log (a pipe into it, see `logs`; stdin empty), the caller's three
/// descriptors, or a new pty.
/// `root`: the running container's root, whose own devpts gives the terminal, if not
/// the helper's.
pub fn wire(
    stdio: Stdio,
    fds: Vec<OwnedFd>,
    log_path: &Path,
    log_config: LogConfig,
    root: Option<&container_rootfs::Root>,
) -> Result<Wiring, String> {
    match stdio {
        Stdio::Log => {
            let log = crate::logs::pipe_into(log_path, log_config)?;
            let log2 = log
                .try_clone()
                .map_err(|e| format!("duplicate log descriptor: {e}"))?;
            Ok(Wiring {
                stdin: StdStdio::null(),
                stdout: log.into(),
                stderr: log2.into(),
                master: None,
            })
        }
        Stdio::Inherit => {
            let [stdin, stdout, stderr]: [OwnedFd; 3] = fds.try_into().map_err(|v: Vec<_>| {
                format!(
                    "inherited stdio needs 3 descriptors, the call carried {}",
                    v.len()
                )
            })?;
            Ok(Wiring {
                stdin: stdin.into(),
                stdout: stdout.into(),
                stderr: stderr.into(),
                master: None,
            })
        }
        Stdio::Tty => {
            let (master, slave) = match root {
                Some(root) => crate::pty::open_in(root)
                    .map_err(|e| format!("open the container's terminal: {e}"))?,
                None => crate::pty::open().map_err(|e| format!("open pty: {e}"))?,
            };
            let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("duplicate pty: {e}"));
            Ok(Wiring {
                stdin: dup(&slave)?.into(),
                stdout: dup(&slave)?.into(),
                stderr: slave.into(),
                master: Some(master),
            })
        }
    }
}

/// A process's end as the protocol reports it: 128 + signal when killed, as shells do.
pub fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(sig)) => ExitStatus::new(128 + sig, Some(sig)),
        (Some(code), None) => ExitStatus::new(code, None),
        // Neither: stopped/continued, which `wait` does not report; treat as failure.
        (None, None) => ExitStatus::new(255, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_layers_override_and_defaults_fill_in() {
        let base = vec![
            "A=1".to_string(),
            "PATH=/bin".to_string(),
            "junk".to_string(),
        ];
        let over = vec!["A=2".to_string()];
        let root = crate::plan::Credentials {
            uid: 0,
            gid: 0,
            groups: vec![],
            home: "/root".into(),
        };
        let env = environment(&[&base, &over], "box", &root, true);
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("A"), Some("2"));
        assert_eq!(get("PATH"), Some("/bin"));
        assert_eq!(get("HOSTNAME"), Some("box"));
        assert_eq!(get("TERM"), Some("xterm"));
        assert_eq!(get("HOME"), Some("/root"));
        assert_eq!(get("junk"), None);
    }

    #[test]
    fn signalled_exit_reads_as_128_plus_signal() {
        use std::os::unix::process::ExitStatusExt;
        let s = exit_status(std::process::ExitStatus::from_raw(9));
        assert_eq!(s, ExitStatus::new(137, Some(9)));
        let s = exit_status(std::process::ExitStatus::from_raw(3 << 8));
        assert_eq!(s, ExitStatus::new(3, None));
    }
}
