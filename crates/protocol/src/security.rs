//! A container's confinement: what the user asked for ([`SecurityConfig`], part of the
//! container's configuration, recorded with the effective result filled in at create)
//! and what its sandbox applies to every process it starts ([`Confinement`], computed
//! by the apiserver and carried in the sandbox spec).
//!
//! Both travel in bincode: no `skip_serializing_if`, and enums externally tagged.

use serde::{Deserialize, Serialize};

/// Every capability the runtime knows, by number (`capability.h`). A kernel may know
/// fewer (`/proc/sys/kernel/cap_last_cap`): the sandbox applies only what it has.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default set (moby `oci/caps/defaults.go`), Podman's too: what a root
/// workload holds unless told otherwise.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's masked paths: a file is covered by /dev/null, a directory by an empty
/// read-only tmpfs. Each lets a workload read host state (kernel memory, keys, timers)
/// or reach host hardware.
pub const DEFAULT_MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Docker's read-only paths: writing there changes the host's kernel (sysctls, the
/// core-dump helper, sysrq, IRQ affinity).
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's /dev/shm: 64 MiB.
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// Which seccomp filter a container's processes run under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompConfig {
    /// The runtime's default profile (Docker's), with what the capabilities unlock.
    #[default]
    Default,
    /// `--security-opt seccomp=unconfined`: no filter.
    Unconfined,
    /// `--security-opt seccomp=FILE`: a Docker or Podman JSON profile, kept whole so the
    /// container does not depend on the file staying where it was.
    Profile {
        /// Where it was read from, as given; for `inspect`.
        source: String,
        /// The profile's text.
        profile: String,
    },
}

/// The container's confinement as configured. `capabilities` is the effective set,
/// computed by the apiserver at create from `privileged`, `cap_add` and `cap_drop`; the
/// other fields hold what applies (a record written before this existed loads with
/// Docker's defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    /// `--privileged`, as Docker means it: every capability, no seccomp filter, no
    /// masked or read-only paths, a writable /sys, and the host's devices.
    pub privileged: bool,
    /// `--cap-add`, canonical names (`CAP_NET_ADMIN`) or `ALL`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`, canonical names or `ALL`.
    pub cap_drop: Vec<String>,
    /// The effective bounding, permitted and effective sets (computed at create).
    pub capabilities: Vec<String>,
    /// `--security-opt no-new-privileges[=BOOL]`; unset: the apiserver's default,
    /// recorded at create.
    pub no_new_privileges: Option<bool>,
    pub seccomp: SeccompConfig,
    /// Paths hidden from the workload (`--security-opt systempaths=unconfined`: none).
    pub masked_paths: Vec<String>,
    /// Paths made read-only for the workload (`systempaths=unconfined`: none).
    pub readonly_paths: Vec<String>,
    /// `--read-only`: the root filesystem is mounted read-only.
    pub read_only: bool,
    /// `--shm-size`, bytes.
    pub shm_size: u64,
    /// `--host-rootfs`: no root filesystem, the workload sees the host's own files.
    pub host_rootfs: bool,
}

impl Default for SecurityConfig {
    fn default() -> SecurityConfig {
        SecurityConfig {
            privileged: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            capabilities: DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            no_new_privileges: None,
            seccomp: SeccompConfig::Default,
            masked_paths: strings(&DEFAULT_MASKED_PATHS),
            readonly_paths: strings(&DEFAULT_READONLY_PATHS),
            read_only: false,
            shm_size: DEFAULT_SHM_SIZE,
            host_rootfs: false,
        }
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A capability name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {0:?} (names as in capabilities(7), with or without CAP_, or ALL)")]
pub struct UnknownCapability(pub String);

/// `net_admin`, `NET_ADMIN`, `CAP_NET_ADMIN` → `CAP_NET_ADMIN`; `all` → `ALL`.
pub fn canonical_capability(name: &str) -> Result<String, UnknownCapability> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    match CAPABILITIES.contains(&full.as_str()) {
        true => Ok(full),
        false => Err(UnknownCapability(name.to_string())),
    }
}

/// The number of a canonical capability name.
pub fn capability_number(name: &str) -> Option<u32> {
    CAPABILITIES
        .iter()
        .position(|c| *c == name)
        .map(|i| i as u32)
}

/// The effective set, with Docker's rules: `--privileged` is every capability; `ALL`
/// added is every one but those dropped; `ALL` dropped is only those added; otherwise
/// the defaults, less those dropped, plus those added. Names must be canonical.
pub fn effective_capabilities(privileged: bool, add: &[String], drop: &[String]) -> Vec<String> {
    let all = || CAPABILITIES.iter().map(|c| c.to_string());
    let mut caps: Vec<String> = if privileged {
        all().collect()
    } else if add.iter().any(|c| c == "ALL") {
        all().filter(|c| !drop.contains(c)).collect()
    } else if drop.iter().any(|c| c == "ALL") {
        add.to_vec()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .chain(add.iter().cloned())
            .collect()
    };
    // In capability order, once each: what `inspect` shows and the mask both read.
    caps.retain(|c| c != "ALL");
    caps.sort_by_key(|c| capability_number(c));
    caps.dedup();
    caps
}

/// The mask of canonical names (unknown ones are not counted).
pub fn capability_mask(names: &[String]) -> u64 {
    names
        .iter()
        .filter_map(|n| capability_number(n))
        .fold(0, |mask, n| mask | (1u64 << n))
}

/// A compiled seccomp filter: the classic-BPF program, as `struct sock_filter` entries
/// in native byte order, and the `seccomp(2)` flags to load it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompProgram {
    pub filter: Vec<u8>,
    pub flags: u32,
}

/// What the sandbox applies to every process of the container, the workload and each
/// `exec` alike (see the sandbox helper's launch plan for the order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// Bounding, permitted and effective sets (bit N: capability N). Inheritable and
    /// ambient are empty.
    pub capabilities: u64,
    pub no_new_privileges: bool,
    /// None: unconfined.
    pub seccomp: Option<SeccompProgram>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub read_only_rootfs: bool,
    /// `--privileged`: /sys mounted read-write.
    pub writable_sysfs: bool,
    pub shm_size: u64,
}

impl Confinement {
    /// Nothing confined: every capability, no filter, no masks. What a `--privileged`
    /// container without a profile gets.
    pub fn unconfined() -> Confinement {
        Confinement {
            capabilities: u64::MAX,
            no_new_privileges: false,
            seccomp: None,
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
            read_only_rootfs: false,
            writable_sysfs: true,
            shm_size: DEFAULT_SHM_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn capability_names_are_taken_with_or_without_cap_and_in_any_case() {
        for given in ["net_admin", "NET_ADMIN", "CAP_NET_ADMIN", "cap_net_admin"] {
            assert_eq!(canonical_capability(given).unwrap(), "CAP_NET_ADMIN");
        }
        assert_eq!(canonical_capability("all").unwrap(), "ALL");
        let e = canonical_capability("NET_ADMINN").unwrap_err().to_string();
        assert!(e.contains("\"NET_ADMINN\""), "{e}");
        assert!(canonical_capability("CAP_").is_err());
        assert_eq!(capability_number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(capability_number("CAP_CHECKPOINT_RESTORE"), Some(40));
    }

    #[test]
    fn the_effective_set_follows_dockers_rules() {
        let default = effective_capabilities(false, &[], &[]);
        assert_eq!(default.len(), 14);
        assert_eq!(
            capability_mask(&default),
            0xa80425fb,
            "Docker's default CapEff"
        );
        let e = effective_capabilities(false, &names(&["CAP_SYS_ADMIN"]), &names(&["CAP_NET_RAW"]));
        assert!(e.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!e.contains(&"CAP_NET_RAW".to_string()));
        assert_eq!(e.len(), 14);
        let only = effective_capabilities(false, &names(&["CAP_KILL"]), &names(&["ALL"]));
        assert_eq!(only, names(&["CAP_KILL"]));
        let most = effective_capabilities(false, &names(&["ALL"]), &names(&["CAP_SYS_ADMIN"]));
        assert_eq!(most.len(), CAPABILITIES.len() - 1);
        let all = effective_capabilities(true, &[], &names(&["CAP_KILL"]));
        assert_eq!(all.len(), CAPABILITIES.len());
        // Added twice, or added while a default: once.
        let twice = effective_capabilities(false, &names(&["CAP_KILL", "CAP_KILL"]), &[]);
        assert_eq!(twice.len(), 14);
    }

    #[test]
    fn a_record_without_security_loads_with_the_defaults() {
        let c: SecurityConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, SecurityConfig::default());
        assert_eq!(c.masked_paths.len(), 12);
        assert_eq!(c.seccomp, SeccompConfig::Default);
        let c: SecurityConfig = serde_json::from_str(
            r#"{"seccomp": {"profile": {"source": "p.json", "profile": "{}"}}}"#,
        )
        .unwrap();
        assert!(matches!(c.seccomp, SeccompConfig::Profile { .. }));
    }
}
