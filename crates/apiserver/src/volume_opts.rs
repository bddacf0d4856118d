//! The local driver's options, as Docker's local driver takes them (`volume create -o`,
//! `--mount …,volume-opt=K=V` for a volume the mount creates): `type`, `device`, `o`.
//!
//! * none given: the volume is its `_data` directory, bound into each container;
//! * `type=none,o=bind,device=/host/path` (or `rbind`): that host path, bound instead;
//! * `type=T,device=D[,o=…]`: a filesystem the kernel mounts (`tmpfs`, `ext4` on a
//!   block device or an image file, `nfs` with `o=addr=…`, …). It is mounted in each
//!   container's own mount namespace, never on the host's (issue 12's rule: a SIGKILL
//!   leaves nothing mounted): a disk or a network filesystem is then shared through
//!   its device, while a `tmpfs` volume is each container's own, unlike Docker's,
//!   which mounts it once on the host and shares it.
//!
//! `o` is split as mount(8) does: the words mount(2) has flags for become flags, the
//! rest is the filesystem's data. `nosuid` and `nodev` are on unless `suid` or `dev`
//! is given: a volume's filesystem may be a stranger's disk image.

use std::collections::BTreeMap;

use container_protocol::volume::SandboxMountKind;

/// What a volume's options make of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalMount {
    /// Its `_data` directory.
    Dir,
    /// A host path bound (`type=none,o=bind`).
    Bind { source: String },
    /// A filesystem mounted with `flags` (mount(2)'s) and `data`.
    Filesystem {
        fstype: String,
        device: String,
        flags: u64,
        data: String,
    },
}

/// Kernel filesystems that show the host, not a volume: refused as a volume's type.
const HOST_VIEWS: [&str; 14] = [
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "debugfs",
    "tracefs",
    "securityfs",
    "bpf",
    "configfs",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "pstore",
    "devpts",
];

/// Parses and checks `opts`; the error names the value and the volume.
pub fn parse(name: &str, opts: &BTreeMap<String, String>) -> Result<LocalMount, String> {
    if let Some(k) = opts
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "device" | "o"))
    {
        return Err(format!(
            "volume {name}: option {k:?} is not one of the local driver's (type, device, o)"
        ));
    }
    let get = |k: &str| opts.get(k).map(String::as_str);
    let (fstype, device) = match (get("type"), get("device")) {
        (None, None) if get("o").is_none() => return Ok(LocalMount::Dir),
        (Some(t), Some(d)) if !t.is_empty() && !d.is_empty() => (t, d),
        _ => {
            return Err(format!(
                "volume {name}: the local driver's options need both type= and device= (o= is optional)"
            ))
        }
    };
    for (what, v) in [
        ("type", fstype),
        ("device", device),
        ("o", get("o").unwrap_or("")),
    ] {
        if v.contains('\0') {
            return Err(format!("volume {name}: {what} {v:?} holds a NUL byte"));
        }
    }
    if !fstype
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(format!(
            "volume {name}: type {fstype:?} is not a filesystem type"
        ));
    }
    if HOST_VIEWS.contains(&fstype) {
        return Err(format!(
            "volume {name}: type {fstype:?} shows the host's kernel, not a volume's data"
        ));
    }
    let (flags, data) = split_o(name, get("o").unwrap_or(""))?;
    let bind = flags & libc::MS_BIND != 0;
    match (fstype, bind) {
        ("none", true) => {
            if !device.starts_with('/') {
                return Err(format!(
                    "volume {name}: device {device:?} of a bind is not an absolute host path"
                ));
            }
            if std::fs::metadata(device).is_err() {
                return Err(format!(
                    "volume {name}: device {device} of a bind does not exist"
                ));
            }
            Ok(LocalMount::Bind {
                source: device.to_string(),
            })
        }
        ("none", false) => Err(format!(
            "volume {name}: type \"none\" needs o=bind (or rbind) and a host path as device"
        )),
        (_, true) => Err(format!(
            "volume {name}: o=bind goes with type=none, not type={fstype}"
        )),
        _ => Ok(LocalMount::Filesystem {
            fstype: fstype.to_string(),
            device: device.to_string(),
            flags,
            data,
        }),
    }
}

/// `o`'s words: mount(2) flags, and the filesystem's own data.
fn split_o(name: &str, o: &str) -> Result<(u64, String), String> {
    let mut set: u64 = libc::MS_NOSUID | libc::MS_NODEV;
    let mut data: Vec<&str> = Vec::new();
    for word in o.split(',').filter(|w| !w.is_empty()) {
        let (on, off): (u64, u64) = match word {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "noatime" => (libc::MS_NOATIME, 0),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "remount" | "move" | "shared" | "private" | "slave" | "unbindable" => {
                return Err(format!(
                    "volume {name}: o={word} is not an option of a volume's mount"
                ))
            }
            _ => {
                data.push(word);
                continue;
            }
        };
        set = (set | on) & !off;
    }
    Ok((set, data.join(",")))
}

impl LocalMount {
    /// How the sandbox mounts it; `data_dir` is the volume's `_data`.
    pub fn sandbox_kind(&self, data_dir: &str, copy_up: bool) -> SandboxMountKind {
        match self {
            LocalMount::Dir => SandboxMountKind::Bind {
                source: data_dir.to_string(),
                copy_up,
            },
            LocalMount::Bind { source } => SandboxMountKind::Bind {
                source: source.clone(),
                copy_up: false,
            },
            LocalMount::Filesystem {
                fstype,
                device,
                flags,
                data,
            } => SandboxMountKind::Filesystem {
                fstype: fstype.clone(),
                device: device.clone(),
                flags: *flags,
                data: data.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_local_drivers_shapes() {
        assert_eq!(parse("v", &opts(&[])).unwrap(), LocalMount::Dir);
        let t = parse(
            "v",
            &opts(&[
                ("type", "tmpfs"),
                ("device", "tmpfs"),
                ("o", "size=1m,ro,uid=5,exec"),
            ]),
        )
        .unwrap();
        assert_eq!(
            t,
            LocalMount::Filesystem {
                fstype: "tmpfs".into(),
                device: "tmpfs".into(),
                flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RDONLY,
                data: "size=1m,uid=5".into(),
            }
        );
        let b = parse(
            "v",
            &opts(&[("type", "none"), ("device", "/tmp"), ("o", "bind")]),
        )
        .unwrap();
        assert_eq!(
            b,
            LocalMount::Bind {
                source: "/tmp".into()
            }
        );
        let dev = parse(
            "v",
            &opts(&[("type", "ext4"), ("device", "/dev/x"), ("o", "dev,suid")]),
        );
        assert!(
            matches!(dev, Ok(LocalMount::Filesystem { flags: 0, .. })),
            "{dev:?}"
        );
    }

    #[test]
    fn bad_options_are_named() {
        let cases: [(&[(&str, &str)], &str); 9] = [
            (&[("foo", "bar")], "option \"foo\""),
            (&[("type", "tmpfs")], "both type= and device="),
            (&[("o", "size=1m")], "both type= and device="),
            (
                &[("type", "TMP,x"), ("device", "d")],
                "not a filesystem type",
            ),
            (&[("type", "proc"), ("device", "proc")], "shows the host"),
            (
                &[("type", "none"), ("device", "rel"), ("o", "bind")],
                "not an absolute",
            ),
            (
                &[
                    ("type", "none"),
                    ("device", "/nonexistent/x"),
                    ("o", "bind"),
                ],
                "does not exist",
            ),
            (&[("type", "none"), ("device", "/tmp")], "needs o=bind"),
            (
                &[("type", "tmpfs"), ("device", "t"), ("o", "remount")],
                "o=remount",
            ),
        ];
        for (given, want) in cases {
            let err = parse("v", &opts(given)).unwrap_err();
            assert!(
                err.contains(want) && err.starts_with("volume v: "),
                "{given:?}: {err}"
            );
        }
    }
}
