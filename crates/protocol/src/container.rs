//! A container's configuration: what the user asked for. The CLI builds it (from flags
//! or a `--config` file), the apiserver validates it and keeps it as
//! `<root>/containers/<id>/config.json`.
//!
//! It travels in bincode, which is not self-describing: no field may be skipped when
//! serialising (`skip_serializing_if`), or the reader would read the next field in its
//! place. The JSON record therefore spells out empty fields too; `default` lets records
//! that omit them load.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::sandbox::UserSpec;

use crate::network::PortMap;

/// One `--network NET[,ip=..][,ip6=..][,mac=..][,ifname=..]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachmentConfig {
    pub network: String,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    #[serde(default)]
    pub ifname: Option<String>,
    /// `--network-alias`, `alias=`: more names for the container on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A unicast MAC address, `aa:bb:cc:dd:ee:ff` in JSON, checked when it is read: a
/// multicast, broadcast or all-zero address can't be given to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<MacAddr, String> {
        let bad = || format!("invalid MAC address {s:?}: expected a unicast xx:xx:xx:xx:xx:xx");
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(bad());
            }
            mac[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if mac[0] & 1 == 1 || mac == [0; 6] {
            return Err(bad());
        }
        Ok(MacAddr(mac))
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// OCI `linux.netDevices` entry: keyed by the host interface name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDeviceConfig {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessConfig {
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    /// `-u USER[:GROUP]`, names or numbers, resolved when a process starts against the
    /// container's own /etc/passwd and /etc/group. Absent: `uid` and `gid`.
    #[serde(default)]
    pub user: Option<UserSpec>,
    /// Numeric ids, as records written before `user` hold them (and `--config` files
    /// may).
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub interactive: bool,
}

impl ProcessConfig {
    /// Who the process runs as: `user`, or else the numeric `uid:gid`.
    pub fn user(&self) -> UserSpec {
        self.user
            .clone()
            .unwrap_or_else(|| UserSpec::ids(self.uid, Some(self.gid)))
    }

    /// `user` and numeric ids together would say two things.
    pub fn check_user(&self) -> Result<(), String> {
        match &self.user {
            Some(user) if self.uid != 0 || self.gid != 0 => Err(format!(
                "user {user} and uid {}/gid {} given together: give one of them",
                self.uid, self.gid
            )),
            _ => Ok(()),
        }
    }
}

/// What the user asked for, with the CLI's defaults filled in. `create --config FILE`
/// reads this shape with a few more forms (see the CLI's `config_file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub id: String,
    pub process: ProcessConfig,
    #[serde(default)]
    pub rootfs: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// The networks to join, in order (`eth0`, `eth1`, …); empty: loopback only. The CLI
    /// sends the `default` network when none is named, as Docker does.
    #[serde(default)]
    pub networks: Vec<NetworkAttachmentConfig>,
    #[serde(default, rename = "netDevices")]
    pub net_devices: BTreeMap<String, NetDeviceConfig>,
    /// Published ports, forwarded to the first network's address.
    #[serde(default)]
    pub ports: Vec<PortMap>,
    #[serde(default)]
    pub auto_remove: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub created: u64,
    /// How much of the workload's output is kept (`--log-opt`).
    #[serde(default)]
    pub log: LogConfig,
    /// Capabilities, seccomp, masked paths and the root filesystem's mode (issue 10).
    #[serde(default)]
    pub security: crate::security::SecurityConfig,
    /// cgroup limits, devices and rlimits (issue 10).
    #[serde(default)]
    pub resources: crate::resources::ResourceConfig,
    /// `--userns`; unset: the apiserver's default, recorded at create (a record
    /// written before it: the host's ids).
    #[serde(default)]
    pub userns: Option<crate::resources::UsernsMode>,
    /// The image the root filesystem is made of (`run IMAGE`), instead of `rootfs`.
    #[serde(default)]
    pub image: Option<ImageUse>,
    /// `--restart`: what the apiserver does when the workload exits on its own.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// The `--health-*` flags as given; merged with the image's HEALTHCHECK into
    /// `healthcheck` at create.
    #[serde(default)]
    pub health_flags: HealthFlags,
    /// The check that runs, resolved at create. None: no check.
    #[serde(default)]
    pub healthcheck: Option<HealthConfig>,
    /// `-v`, `--mount`, `--tmpfs` (issue 12), in the order given; anonymous volumes
    /// are named at create.
    #[serde(default)]
    pub mounts: Vec<crate::volume::MountConfig>,
}

/// `--health-on-failure=none|kill|restart`, as Podman's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthAction {
    #[default]
    None,
    Kill,
    Restart,
}

/// The health flags of `run`/`create`; unset fields come from the image, then from
/// Docker's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthFlags {
    /// `--health-cmd STRING` as `["sh", "-c", STRING]`.
    #[serde(default)]
    pub test: Option<Vec<String>>,
    #[serde(default)]
    pub interval_ms: Option<u64>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub start_period_ms: Option<u64>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub on_failure: HealthAction,
    /// `--no-healthcheck`: none, not even the image's.
    #[serde(default)]
    pub disabled: bool,
}

/// A health check as it runs: the command exec'd in the container, how often, how long
/// it may take, how many failures in a row make the container unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub start_period_ms: u64,
    pub retries: u32,
    #[serde(default)]
    pub on_failure: HealthAction,
}

impl HealthConfig {
    /// Docker's defaults: every 30 s, 30 s to answer, unhealthy after 3 failures.
    pub const DEFAULT_INTERVAL_MS: u64 = 30_000;
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
    pub const DEFAULT_RETRIES: u32 = 3;

    /// The flags over the image's check (`image`: its `Test` already as a command,
    /// and its timings), or None when there is no check.
    pub fn resolve(flags: &HealthFlags, image: Option<&HealthConfig>) -> Option<HealthConfig> {
        if flags.disabled {
            return None;
        }
        let test = flags
            .test
            .clone()
            .or_else(|| image.map(|i| i.test.clone()))?;
        if test.is_empty() {
            return None;
        }
        let pick = |f: Option<u64>, i: Option<u64>, d: u64| f.or(i).filter(|v| *v > 0).unwrap_or(d);
        Some(HealthConfig {
            test,
            interval_ms: pick(
                flags.interval_ms,
                image.map(|i| i.interval_ms),
                Self::DEFAULT_INTERVAL_MS,
            ),
            timeout_ms: pick(
                flags.timeout_ms,
                image.map(|i| i.timeout_ms),
                Self::DEFAULT_TIMEOUT_MS,
            ),
            start_period_ms: flags
                .start_period_ms
                .or(image.map(|i| i.start_period_ms))
                .unwrap_or(0),
            retries: flags
                .retries
                .or(image.map(|i| i.retries).filter(|r| *r > 0))
                .unwrap_or(Self::DEFAULT_RETRIES),
            on_failure: flags.on_failure,
        })
    }
}

/// `--restart no|on-failure[:N]|always|unless-stopped`, as Docker's. Travels and is
/// recorded as its flag's text, so records stay readable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RestartPolicy {
    #[default]
    No,
    /// Restarted after a non-zero exit, at most `max` times (None: without a bound).
    OnFailure { max: Option<u32> },
    /// Restarted after every exit but a user's stop; back at every apiserver start.
    Always,
    /// As `Always`, except that a user's stop holds across apiserver restarts too.
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<RestartPolicy, String> {
        let bad = || {
            format!("restart policy {s:?}: use no, on-failure[:N] (N a count of at least 1), always or unless-stopped")
        };
        match s {
            "no" | "" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" => Ok(RestartPolicy::OnFailure { max: None }),
            _ => {
                let n = s.strip_prefix("on-failure:").ok_or_else(bad)?;
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                match n.parse::<u32>() {
                    Ok(0) | Err(_) => Err(bad()),
                    Ok(max) => Ok(RestartPolicy::OnFailure { max: Some(max) }),
                }
            }
        }
    }
}

impl TryFrom<String> for RestartPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<RestartPolicy, String> {
        s.parse()
    }
}

impl From<RestartPolicy> for String {
    fn from(p: RestartPolicy) -> String {
        match p {
            RestartPolicy::No => "no".into(),
            RestartPolicy::OnFailure { max: None } => "on-failure".into(),
            RestartPolicy::OnFailure { max: Some(n) } => format!("on-failure:{n}"),
            RestartPolicy::Always => "always".into(),
            RestartPolicy::UnlessStopped => "unless-stopped".into(),
        }
    }
}

/// `--pull=missing|always|never`, as Docker's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    #[default]
    Missing,
    Always,
    Never,
}

/// A container made from an image. The CLI gives `reference` and the overrides; the
/// apiserver resolves the image at create and fills in the rest, so the container
/// keeps what it was made from whatever later happens to the tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUse {
    /// As the user gave it (`alpine`, `localhost:5000/app:1`, an id).
    pub reference: String,
    /// `--entrypoint`: `Some([])` for `--entrypoint ''`.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// The arguments given after the image (the process's `args` are the whole
    /// command, made from these and the image's Entrypoint and Cmd).
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub pull: PullPolicy,
    /// Filled in at create: the image id (its config's digest).
    #[serde(default)]
    pub id: Option<String>,
    /// Filled in at create: the chain IDs of its layers, bottom first.
    #[serde(default)]
    pub layers: Vec<String>,
    /// Filled in at create: the image's StopSignal.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// Docker's `local` log driver habits: the output goes to `container.log`, which is
/// rotated at `max_size` bytes into `container.log.1`, `.2`, …, keeping `max_files`
/// files in all; the oldest goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub max_size: u64,
    pub max_files: u32,
}

/// 10 MiB × 3: a chatty container keeps at most 30 MiB, a quiet one its whole story.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const DEFAULT_LOG_MAX_FILES: u32 = 3;
/// The copier reads at most this much at once, and never splits one read over a limit
/// it fits in: with files at least this big, no file ever exceeds `max_size`.
pub const MIN_LOG_SIZE: u64 = 64 * 1024;
/// Every file of a log travels in one `logs` reply, as one descriptor each.
pub const MAX_LOG_FILES: u32 = crate::frame::MAX_FDS_PER_FRAME as u32;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_size: DEFAULT_LOG_MAX_SIZE,
            max_files: DEFAULT_LOG_MAX_FILES,
        }
    }
}

impl LogConfig {
    /// Why these limits cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.max_size < MIN_LOG_SIZE {
            return Err(format!(
                "log max-size {} is below the minimum of {MIN_LOG_SIZE} bytes (64k)",
                self.max_size
            ));
        }
        if !(1..=MAX_LOG_FILES).contains(&self.max_files) {
            return Err(format!(
                "log max-file {} is not between 1 and {MAX_LOG_FILES}",
                self.max_files
            ));
        }
        Ok(())
    }
}
