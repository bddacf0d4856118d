//! Mounts a container asks for (`-v`, `--mount`, `--tmpfs`) and named volumes.
//!
//! A [`MountConfig`] is what the user asked for, kept in the container's record; the
//! apiserver turns it into a [`SandboxMount`] at each start (a volume's name into its
//! data directory), which the sandbox mounts inside the container's root. Both travel
//! in bincode: no skipped fields, `default` on new ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A named (or anonymous) volume of the runtime's store.
    Volume,
    /// A fresh tmpfs.
    Tmpfs,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// `bind-propagation=`, as mount(2) names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    #[default]
    Rprivate,
    Private,
    Rslave,
    Slave,
    Rshared,
    Shared,
}

impl Propagation {
    pub const ALL: [Propagation; 6] = [
        Propagation::Rprivate,
        Propagation::Private,
        Propagation::Rslave,
        Propagation::Slave,
        Propagation::Rshared,
        Propagation::Shared,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Rprivate => "rprivate",
            Propagation::Private => "private",
            Propagation::Rslave => "rslave",
            Propagation::Slave => "slave",
            Propagation::Rshared => "rshared",
            Propagation::Shared => "shared",
        }
    }

    pub fn parse(s: &str) -> Option<Propagation> {
        Propagation::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Receives mounts from the host: the container's `/` must then be a slave, not
    /// private, or the bind is cut from its peers before it is made.
    pub fn from_host(self) -> bool {
        !matches!(self, Propagation::Rprivate | Propagation::Private)
    }
}

/// One mount, as asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountConfig {
    #[serde(rename = "type")]
    pub kind: MountKind,
    /// A host path (bind), a volume name (volume; empty: an anonymous volume, named at
    /// create), nothing (tmpfs).
    #[serde(default)]
    pub source: String,
    /// Absolute, inside the container.
    pub target: String,
    #[serde(default)]
    pub readonly: bool,
    /// Binds only.
    #[serde(default)]
    pub propagation: Option<Propagation>,
    /// `-v HOST:…`: a missing host directory is created, as Docker's `-v` does
    /// (`--mount` refuses it).
    #[serde(default)]
    pub create_source: bool,
    /// An anonymous volume: removed with its container by `rm -v`.
    #[serde(default)]
    pub anonymous: bool,
    /// Volumes: do not seed a new, empty volume with the image's files there.
    #[serde(default)]
    pub no_copy: bool,
    /// `volume-opt` for a volume the mount creates (the local driver's).
    #[serde(default)]
    pub volume_opts: BTreeMap<String, String>,
    /// tmpfs: bytes; none: the kernel's default (half of memory).
    #[serde(default)]
    pub tmpfs_size: Option<u64>,
    /// tmpfs: the root directory's mode; none: 1777.
    #[serde(default)]
    pub tmpfs_mode: Option<u32>,
    /// tmpfs: allow exec (`--tmpfs PATH:exec`); noexec by default, as Docker's.
    #[serde(default)]
    pub tmpfs_exec: bool,
}

impl MountConfig {
    pub fn new(kind: MountKind, source: &str, target: &str) -> MountConfig {
        MountConfig {
            kind,
            source: source.to_string(),
            target: target.to_string(),
            readonly: false,
            propagation: None,
            create_source: false,
            anonymous: false,
            no_copy: false,
            volume_opts: BTreeMap::new(),
            tmpfs_size: None,
            tmpfs_mode: None,
            tmpfs_exec: false,
        }
    }
}

/// What the sandbox mounts, resolved by the apiserver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxMount {
    pub kind: SandboxMountKind,
    /// Absolute inside the container, looked up inside its root.
    pub target: String,
    pub readonly: bool,
    pub propagation: Propagation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxMountKind {
    /// A host path (trusted: the apiserver checked it), recursively bound.
    Bind {
        source: String,
        /// A volume's data directory: seeded from the root's files at the target when
        /// it is empty (Docker's copy-up).
        copy_up: bool,
    },
    /// tmpfs with these mount options (`size=…,mode=…`).
    Tmpfs { options: String, exec: bool },
    /// A volume of the local driver with `type=`/`device=`: that filesystem, mounted
    /// with mount(2)'s `flags` and the filesystem's `data` (the apiserver checked them).
    Filesystem {
        fstype: String,
        device: String,
        flags: u64,
        data: String,
    },
}

/// A volume's metadata: `<root>/volumes/<name>/volume.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    #[serde(default = "local")]
    pub driver: String,
    /// Seconds since the epoch.
    pub created: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Made for one container's `-v PATH` or an image's VOLUME.
    #[serde(default)]
    pub anonymous: bool,
}

fn local() -> String {
    "local".to_string()
}

/// `volume create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumeCreate {
    /// None: a random name.
    pub name: Option<String>,
    pub driver: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}
