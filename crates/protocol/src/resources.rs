//! What a container may use, and whose ids it runs under (issue 10): cgroup limits,
//! devices, rlimits, and the user namespace. Fields of `ContainerConfig`, recorded as
//! they apply (the apiserver fills the defaults in at create, so `inspect` shows the
//! effective settings), and loaded with the defaults from records written before them.
//! No field is skipped when serialising: these travel in bincode too.

use serde::{Deserialize, Serialize};

/// podman's default: a fork bomb stops here.
pub const DEFAULT_PIDS_LIMIT: i64 = 2048;
/// Docker's and podman's floor for `--memory`: below it a container can hardly start,
/// and the kernel would OOM-kill it while it does.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;
/// podman's default for NOFILE and NPROC, capped to the hard limit the runtime has.
pub const DEFAULT_ULIMIT: u64 = 1_048_576;
/// `cpu.cfs_period_us` / cpu.max's period for `--cpus`: Docker's 100 ms.
pub const CPU_PERIOD_US: u64 = 100_000;
/// RLIM_INFINITY.
pub const UNLIMITED: u64 = u64::MAX;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceConfig {
    /// `--memory`, bytes.
    pub memory: Option<u64>,
    /// `--memory-swap`: memory and swap together, bytes; -1: swap unlimited. Unset with
    /// `--memory`: twice the memory (Docker's rule).
    pub memory_swap: Option<i64>,
    /// `--cpus` × 10⁹ (Docker's NanoCpus).
    pub nano_cpus: Option<u64>,
    /// `--cpu-shares`: relative weight, 2 to 262144.
    pub cpu_shares: Option<u64>,
    /// `--pids-limit`; 0 or -1: no limit. Filled with [`DEFAULT_PIDS_LIMIT`] at create.
    pub pids_limit: Option<i64>,
    /// `--oom-score-adj`, -1000 to 1000.
    pub oom_score_adj: Option<i32>,
    /// `--ulimit`; at create the defaults (NOFILE, NPROC) are added unless given.
    pub ulimits: Vec<Ulimit>,
    /// `--device`: host devices given to the container.
    pub devices: Vec<DeviceMapping>,
}

/// `--ulimit name=soft[:hard]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Docker's names: `nofile`, `nproc`, `core`, `memlock`, …
    pub name: String,
    /// [`UNLIMITED`] for "unlimited" / -1.
    pub soft: u64,
    pub hard: u64,
}

/// The rlimits `--ulimit` knows, by Docker's names, with their resource numbers.
pub const ULIMITS: [(&str, u32); 16] = [
    ("cpu", 0),
    ("fsize", 1),
    ("data", 2),
    ("stack", 3),
    ("core", 4),
    ("rss", 5),
    ("nproc", 6),
    ("nofile", 7),
    ("memlock", 8),
    ("as", 9),
    ("locks", 10),
    ("sigpending", 11),
    ("msgqueue", 12),
    ("nice", 13),
    ("rtprio", 14),
    ("rttime", 15),
];

impl Ulimit {
    /// Parses `name=soft[:hard]` (numbers, or `-1`/`unlimited`).
    pub fn parse(spec: &str) -> Result<Ulimit, String> {
        let bad =
            |why: &str| format!("invalid --ulimit {spec:?}: {why} (expected NAME=SOFT[:HARD])");
        let (name, values) = spec.split_once('=').ok_or_else(|| bad("no '='"))?;
        let name = name.trim().to_ascii_lowercase();
        if !ULIMITS.iter().any(|(n, _)| *n == name) {
            let names: Vec<&str> = ULIMITS.iter().map(|(n, _)| *n).collect();
            return Err(bad(&format!(
                "unknown limit {name:?}; known: {}",
                names.join(", ")
            )));
        }
        let number = |s: &str| -> Result<u64, String> {
            match s.trim() {
                "-1" | "unlimited" => Ok(UNLIMITED),
                n => n
                    .parse::<u64>()
                    .map_err(|_| bad(&format!("{n:?} is not a number"))),
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (number(s)?, number(h)?),
            None => {
                let v = number(values)?;
                (v, v)
            }
        };
        let ulimit = Ulimit { name, soft, hard };
        ulimit.check()?;
        Ok(ulimit)
    }

    pub fn check(&self) -> Result<(), String> {
        if !ULIMITS.iter().any(|(n, _)| *n == self.name) {
            return Err(format!("unknown ulimit {:?}", self.name));
        }
        if self.soft > self.hard {
            return Err(format!(
                "ulimit {}: soft limit {} is above the hard limit {}",
                self.name,
                show_limit(self.soft),
                show_limit(self.hard)
            ));
        }
        Ok(())
    }

    /// The `RLIMIT_*` number.
    pub fn resource(&self) -> Option<u32> {
        ULIMITS
            .iter()
            .find(|(n, _)| *n == self.name)
            .map(|(_, r)| *r)
    }
}

fn show_limit(v: u64) -> String {
    if v == UNLIMITED {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    /// Some of `rwm`.
    pub permissions: String,
}

impl DeviceMapping {
    /// Parses the flag, as Docker does: a second part that is not all `rwm` is the
    /// container path.
    pub fn parse(spec: &str) -> Result<DeviceMapping, String> {
        let bad = |why: &str| {
            format!("invalid --device {spec:?}: {why} (expected HOST[:CONTAINER][:rwm])")
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let perms = |s: &str| !s.is_empty() && s.chars().all(|c| "rwm".contains(c));
        let (host, container, permissions) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, p] if perms(p) => (*h, *h, *p),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => return Err(bad("too many ':'")),
        };
        let d = DeviceMapping {
            path_on_host: host.to_string(),
            path_in_container: container.to_string(),
            permissions: permissions.to_string(),
        };
        d.check().map_err(|e| bad(&e))?;
        Ok(d)
    }

    /// Shape only; whether the host path is a device is the apiserver's check.
    pub fn check(&self) -> Result<(), String> {
        for (what, p) in [
            ("host path", &self.path_on_host),
            ("container path", &self.path_in_container),
        ] {
            if !p.starts_with('/') {
                return Err(format!("{what} {p:?} must be absolute"));
            }
            if p.split('/').any(|c| c == "..") || p.contains('\0') {
                return Err(format!("{what} {p:?} must not contain '..'"));
            }
        }
        if !self.path_in_container.starts_with("/dev/") {
            return Err(format!(
                "container path {:?} must be under /dev",
                self.path_in_container
            ));
        }
        let p = &self.permissions;
        let once = |c: char| p.matches(c).count() <= 1;
        if p.is_empty() || !p.chars().all(|c| "rwm".contains(c)) || !"rwm".chars().all(once) {
            return Err(format!("permissions {p:?} must be some of r, w, m"));
        }
        Ok(())
    }
}

/// `--userns`: whose ids the container runs under.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsernsMode {
    /// The host's ids: root inside is root outside (Docker's and podman's default).
    #[default]
    Host,
    /// A user namespace of its own, mapping 0..65536 onto a range of host ids that no
    /// other container has.
    Auto,
}

impl UsernsMode {
    pub fn parse(s: &str) -> Result<UsernsMode, String> {
        match s {
            "host" | "" => Ok(UsernsMode::Host),
            "auto" => Ok(UsernsMode::Auto),
            other => Err(format!("invalid --userns {other:?}: use host or auto")),
        }
    }
}

/// How many ids a `--userns=auto` container gets (podman's default size).
pub const USERNS_SIZE: u32 = 65_536;

/// Host ids `start .. start + size`, seen inside as `0 .. size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub start: u32,
    pub size: u32,
}

impl IdRange {
    pub fn end(&self) -> u64 {
        u64::from(self.start) + u64::from(self.size)
    }

    pub fn overlaps(&self, other: &IdRange) -> bool {
        u64::from(self.start) < other.end() && u64::from(other.start) < self.end()
    }

    /// The host id of container id `id`, if mapped.
    pub fn host_id(&self, id: u32) -> Option<u32> {
        (id < self.size).then(|| self.start + id)
    }
}

impl ResourceConfig {
    /// Why these settings cannot be used, naming the value; `cpus` is the host's count.
    pub fn check(&self, cpus: usize) -> Result<(), String> {
        if let Some(m) = self.memory {
            if m < MIN_MEMORY {
                return Err(format!(
                    "memory {m} is below the minimum of {MIN_MEMORY} bytes (6m)"
                ));
            }
        }
        if let Some(swap) = self.memory_swap {
            match self.memory {
                None => return Err(format!("memory-swap {swap} needs --memory too")),
                Some(m) if swap != -1 && (swap < 0 || (swap as u64) < m) => {
                    return Err(format!(
                        "memory-swap {swap} must be -1 (unlimited) or at least the memory limit {m}"
                    ))
                }
                _ => {}
            }
        }
        if let Some(n) = self.nano_cpus {
            let max = cpus as u64 * 1_000_000_000;
            if n < 10_000_000 || n > max {
                return Err(format!(
                    "cpus {} is out of range: from 0.01 to {cpus}, the CPUs of this host",
                    show_cpus(n)
                ));
            }
        }
        if let Some(s) = self.cpu_shares {
            if !(2..=262_144).contains(&s) {
                return Err(format!("cpu-shares {s} is not between 2 and 262144"));
            }
        }
        if let Some(p) = self.pids_limit {
            if p < -1 {
                return Err(format!(
                    "pids-limit {p} must be positive (0 or -1: no limit)"
                ));
            }
        }
        if let Some(o) = self.oom_score_adj {
            if !(-1000..=1000).contains(&o) {
                return Err(format!("oom-score-adj {o} is not between -1000 and 1000"));
            }
        }
        for (i, u) in self.ulimits.iter().enumerate() {
            u.check()?;
            if self.ulimits[..i].iter().any(|v| v.name == u.name) {
                return Err(format!("ulimit {} is given twice", u.name));
            }
        }
        for d in &self.devices {
            d.check()
                .map_err(|e| format!("device {}: {e}", d.path_on_host))?;
        }
        Ok(())
    }

    /// The pids limit that applies: `None` for none.
    pub fn pids_max(&self) -> Option<u64> {
        match self.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT) {
            n if n <= 0 => None,
            n => Some(n as u64),
        }
    }

    /// memory + swap that applies: `None` for the kernel's default; `Some(None)`
    /// for unlimited swap.
    pub fn memory_swap_total(&self) -> Option<Option<u64>> {
        match (self.memory, self.memory_swap) {
            (_, Some(-1)) => Some(None),
            (_, Some(n)) => Some(Some(n as u64)),
            (Some(m), None) => Some(Some(m.saturating_mul(2))),
            (None, None) => None,
        }
    }
}

/// `1.5` for 1_500_000_000.
pub fn show_cpus(nano: u64) -> String {
    let whole = nano / 1_000_000_000;
    let frac = nano % 1_000_000_000;
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{frac:09}").trim_end_matches('0'))
    }
}

/// Parses `--cpus` (`1.5`, `0.25`) into nano-CPUs, naming the value when it is none.
pub fn parse_cpus(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid --cpus {text:?}: expected a positive number of CPUs (1.5)");
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!(
            "invalid --cpus {text:?}: the number of CPUs must be positive"
        ));
    }
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if (whole.is_empty() && frac.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
    {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac: u64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000_000)
        .and_then(|w| w.checked_add(frac))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid --cpus {text:?}: the number of CPUs must be positive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_bad_values_are_named() {
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
        assert_eq!(parse_cpus(".25").unwrap(), 250_000_000);
        assert_eq!(show_cpus(1_500_000_000), "1.5");
        assert_eq!(show_cpus(2_000_000_000), "2");
        for bad in ["-1", "0", "x", "", "1.2.3", "1e3"] {
            let e = parse_cpus(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        let u = Ulimit::parse("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard, u.resource()), (1024, 2048, Some(7)));
        assert_eq!(Ulimit::parse("core=-1").unwrap().soft, UNLIMITED);
        for bad in ["nofile", "nofile=2:1", "bogus=1", "nofile=x"] {
            assert!(Ulimit::parse(bad).is_err(), "{bad}");
        }
        let d = DeviceMapping::parse("/dev/fuse").unwrap();
        assert_eq!(
            (d.path_in_container.as_str(), d.permissions.as_str()),
            ("/dev/fuse", "rwm")
        );
        let d = DeviceMapping::parse("/dev/sda:/dev/xvda:r").unwrap();
        assert_eq!(
            (d.path_in_container.as_str(), d.permissions.as_str()),
            ("/dev/xvda", "r")
        );
        let d = DeviceMapping::parse("/dev/sda:rw").unwrap();
        assert_eq!(
            (d.path_in_container.as_str(), d.permissions.as_str()),
            ("/dev/sda", "rw")
        );
        for bad in [
            "dev/sda",
            "/dev/sda:/etc/x",
            "/dev/a:/dev/b:rx",
            "/dev/a:/dev/b:rr",
            "/dev/../x",
        ] {
            assert!(DeviceMapping::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_name_the_value() {
        let r = ResourceConfig {
            memory: Some(10),
            ..Default::default()
        };
        assert!(r.check(2).unwrap_err().contains("memory 10"));
        let r = ResourceConfig {
            nano_cpus: Some(3_000_000_000),
            ..Default::default()
        };
        assert!(r.check(2).unwrap_err().contains("cpus 3"));
        let r = ResourceConfig {
            memory: Some(MIN_MEMORY),
            memory_swap: Some(5),
            ..Default::default()
        };
        assert!(r.check(2).unwrap_err().contains("memory-swap 5"));
        assert_eq!(ResourceConfig::default().pids_max(), Some(2048));
        let none = ResourceConfig {
            pids_limit: Some(-1),
            ..Default::default()
        };
        assert_eq!(none.pids_max(), None);
        let m = ResourceConfig {
            memory: Some(MIN_MEMORY),
            ..Default::default()
        };
        assert_eq!(m.memory_swap_total(), Some(Some(2 * MIN_MEMORY)));
    }

    #[test]
    fn ranges_overlap_as_intervals() {
        let a = IdRange {
            start: 100_000,
            size: 65_536,
        };
        let b = IdRange {
            start: 165_536,
            size: 65_536,
        };
        assert!(!a.overlaps(&b) && !b.overlaps(&a));
        assert!(a.overlaps(&IdRange {
            start: 165_535,
            size: 1
        }));
        assert_eq!(a.host_id(0), Some(100_000));
        assert_eq!(a.host_id(65_536), None);
    }
}
