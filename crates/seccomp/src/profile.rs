//! Docker's JSON seccomp profile format (Podman's is the same), read and checked whole:
//! every action, operator, architecture, flag and system call name must be one this
//! runtime knows, so a typo is an error naming it rather than a rule that never applies.
//! Keys this runtime does not read (`comment`, Podman's empty `includes: {}`) are
//! allowed, as Docker's reader allows them.

use serde::Deserialize;

use crate::syscalls;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProfile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<RawArchMap>>,
    #[serde(default)]
    flags: Option<Vec<String>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<RawSyscall>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSyscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<RawArg>>,
    #[serde(default)]
    includes: Option<RawFilter>,
    #[serde(default)]
    excludes: Option<RawFilter>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFilter {
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// What a matching system call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(u16),
    KillThread,
    KillProcess,
    Trap,
    Trace(u16),
    Log,
}

/// A comparison of one argument (`SCMP_CMP_*`). `MaskedEq` is `(arg & mask) == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq { mask: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg {
    pub index: u32,
    pub op: Op,
    pub value: u64,
}

/// When a rule applies (Docker's `includes`): every listed capability held, the
/// machine one of the listed architectures (Go's names: `amd64`, `arm64`, …), the
/// kernel at least `min_kernel`. Empty means no condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    pub arches: Vec<String>,
    pub caps: Vec<String>,
    pub min_kernel: Option<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    pub args: Vec<Arg>,
    pub includes: Conditions,
    pub excludes: Conditions,
}

/// A profile, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub default_action: Action,
    /// Architectures beyond the machine's own that the filter covers: `architectures`,
    /// or the `archMap` entry of the machine's architecture (`SCMP_ARCH_*` names).
    pub architectures: Vec<String>,
    pub arch_map: Vec<(String, Vec<String>)>,
    /// `seccomp(2)` flags.
    pub flags: u32,
    pub rules: Vec<Rule>,
}

/// Why a profile cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("not a seccomp profile: {0}")]
    Json(String),
    #[error("unknown action {0:?}")]
    Action(String),
    #[error("action {0} needs a seccomp notification listener, which this runtime does not run")]
    Notify(String),
    #[error("unknown comparison {0:?}")]
    Op(String),
    #[error("unknown architecture {0:?}")]
    Arch(String),
    #[error("unknown flag {0:?}")]
    Flag(String),
    #[error("unknown system call {0:?}")]
    Syscall(String),
    #[error("system call {name}: argument index {index} (a system call has 6 arguments, 0 to 5)")]
    ArgIndex { name: String, index: u32 },
    #[error("system call {name}: errno {errno} is out of range (1 to 4095)")]
    Errno { name: String, errno: u32 },
    #[error("both `architectures` and `archMap` are given: use one")]
    ArchTwice,
    #[error("a rule gives both `name` ({0}) and `names`: use one")]
    NameTwice(String),
    #[error("a rule names no system call")]
    NoName,
    #[error("minKernel {0:?} is not a kernel version (MAJOR.MINOR)")]
    Kernel(String),
    #[error("listenerPath {0:?}: seccomp notification listeners are not supported")]
    Listener(String),
}

/// Every `SCMP_ARCH_*` name of libseccomp.
pub const ARCHITECTURES: [&str; 23] = [
    "SCMP_ARCH_NATIVE",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_SHEB",
];

fn arch(name: &str) -> Result<String, ProfileError> {
    // libseccomp's list, and SH (little-endian) which it spells without a suffix.
    match ARCHITECTURES.contains(&name) || name == "SCMP_ARCH_SH" {
        true => Ok(name.to_string()),
        false => Err(ProfileError::Arch(name.to_string())),
    }
}

fn action(name: &str, errno: Option<u32>, what: &str) -> Result<Action, ProfileError> {
    let errno = |default: u32| -> Result<u16, ProfileError> {
        let e = errno.unwrap_or(default);
        match e {
            1..=4095 => Ok(e as u16),
            _ => Err(ProfileError::Errno {
                name: what.to_string(),
                errno: e,
            }),
        }
    };
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(errno(libc::EPERM as u32)?),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_TRACE" => Action::Trace(errno(libc::EPERM as u32)?),
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_NOTIFY" => return Err(ProfileError::Notify(name.to_string())),
        other => return Err(ProfileError::Action(other.to_string())),
    })
}

fn flag(name: &str) -> Result<u32, ProfileError> {
    Ok(match name {
        // One thread when the filter is loaded: nothing to synchronise.
        "SECCOMP_FILTER_FLAG_TSYNC" => 0,
        "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG as u32,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32,
        other => return Err(ProfileError::Flag(other.to_string())),
    })
}

/// `4.8` → (4, 8).
pub fn kernel_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

fn conditions(raw: Option<RawFilter>) -> Result<Conditions, ProfileError> {
    let raw = raw.unwrap_or_default();
    Ok(Conditions {
        arches: raw.arches.unwrap_or_default(),
        caps: raw.caps.unwrap_or_default(),
        min_kernel: match raw.min_kernel {
            None => None,
            Some(k) if k.is_empty() => None,
            Some(k) => Some(kernel_version(&k).ok_or(ProfileError::Kernel(k))?),
        },
    })
}

fn op(name: &str, value: u64, value_two: u64) -> Result<(Op, u64), ProfileError> {
    Ok(match name {
        "SCMP_CMP_NE" => (Op::Ne, value),
        "SCMP_CMP_LT" => (Op::Lt, value),
        "SCMP_CMP_LE" => (Op::Le, value),
        "SCMP_CMP_EQ" => (Op::Eq, value),
        "SCMP_CMP_GE" => (Op::Ge, value),
        "SCMP_CMP_GT" => (Op::Gt, value),
        // As runc passes it to libseccomp: `value` is the mask, `valueTwo` the datum.
        "SCMP_CMP_MASKED_EQ" => (Op::MaskedEq { mask: value }, value_two),
        other => return Err(ProfileError::Op(other.to_string())),
    })
}

/// Reads and checks a profile.
pub fn parse(text: &str) -> Result<Profile, ProfileError> {
    let raw: RawProfile =
        serde_json::from_str(text).map_err(|e| ProfileError::Json(e.to_string()))?;
    if let Some(path) = raw.listener_path.filter(|p| !p.is_empty()) {
        return Err(ProfileError::Listener(path));
    }
    let default_action = action(&raw.default_action, raw.default_errno_ret, "defaultAction")?;
    let architectures = raw
        .architectures
        .unwrap_or_default()
        .iter()
        .map(|a| arch(a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut arch_map = Vec::new();
    for entry in raw.arch_map.unwrap_or_default() {
        let subs = entry
            .sub_architectures
            .unwrap_or_default()
            .iter()
            .map(|a| arch(a))
            .collect::<Result<Vec<_>, _>>()?;
        arch_map.push((arch(&entry.architecture)?, subs));
    }
    if !architectures.is_empty() && !arch_map.is_empty() {
        return Err(ProfileError::ArchTwice);
    }
    let flags = raw
        .flags
        .unwrap_or_default()
        .iter()
        .try_fold(0, |acc, f| flag(f).map(|b| acc | b))?;
    let mut rules = Vec::new();
    for call in raw.syscalls.unwrap_or_default() {
        let names = match (call.name, call.names) {
            (Some(n), Some(list)) if !list.is_empty() => return Err(ProfileError::NameTwice(n)),
            (Some(n), _) => vec![n],
            (None, Some(list)) => list,
            (None, None) => vec![],
        };
        if names.is_empty() {
            return Err(ProfileError::NoName);
        }
        if let Some(unknown) = names.iter().find(|n| !syscalls::known(n)) {
            return Err(ProfileError::Syscall(unknown.clone()));
        }
        let what = names.join(",");
        let action = action(&call.action, call.errno_ret, &what)?;
        let mut args = Vec::new();
        for a in call.args.unwrap_or_default() {
            if a.index > 5 {
                return Err(ProfileError::ArgIndex {
                    name: what,
                    index: a.index,
                });
            }
            let (op, value) = op(&a.op, a.value, a.value_two)?;
            args.push(Arg {
                index: a.index,
                op,
                value,
            });
        }
        rules.push(Rule {
            names,
            action,
            args,
            includes: conditions(call.includes)?,
            excludes: conditions(call.excludes)?,
        });
    }
    Ok(Profile {
        default_action,
        architectures,
        arch_map,
        flags,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text).expect_err(text).to_string()
    }

    #[test]
    fn the_default_profile_reads() {
        let p = parse(crate::DEFAULT_PROFILE).unwrap();
        assert_eq!(p.default_action, Action::Errno(1));
        assert!(p.rules.len() > 30);
        assert!(p
            .arch_map
            .iter()
            .any(|(a, subs)| a == "SCMP_ARCH_X86_64" && subs.contains(&"SCMP_ARCH_X86".into())));
        let clone3 = p
            .rules
            .iter()
            .find(|r| r.names == ["clone3"])
            .expect("clone3 rule");
        assert_eq!(clone3.action, Action::Errno(38));
        assert_eq!(clone3.excludes.caps, ["CAP_SYS_ADMIN"]);
    }

    #[test]
    fn what_is_wrong_is_named() {
        assert!(err("{").starts_with("not a seccomp profile"));
        assert!(err("{}").contains("defaultAction"));
        let base = |syscalls: &str| {
            format!(r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{syscalls}]}}"#)
        };
        let e = err(&base(
            r#"{"names": ["getpid", "no_such_call"], "action": "SCMP_ACT_ALLOW"}"#,
        ));
        assert_eq!(e, "unknown system call \"no_such_call\"");
        let e = err(&base(
            r#"{"names": ["getpid"], "action": "SCMP_ACT_MAYBE"}"#,
        ));
        assert_eq!(e, "unknown action \"SCMP_ACT_MAYBE\"");
        let e = err(&base(
            r#"{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}"#,
        ));
        assert_eq!(e, "unknown comparison \"SCMP_CMP_ABOUT\"");
        let e = err(&base(
            r#"{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}"#,
        ));
        assert!(e.contains("argument index 6"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}"#);
        assert_eq!(e, "unknown architecture \"SCMP_ARCH_Z80\"");
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_Q"]}]}"#,
        );
        assert_eq!(e, "unknown architecture \"SCMP_ARCH_Q\"");
        let e = err(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#);
        assert!(e.contains("listener"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_X"]}"#);
        assert_eq!(e, "unknown flag \"SECCOMP_FILTER_FLAG_X\"");
        let e = err(&base(
            r#"{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5000}"#,
        ));
        assert!(e.contains("errno 5000"), "{e}");
    }

    #[test]
    fn podman_shapes_read_too() {
        // Podman's profile: empty includes/excludes objects, comments, errnoRet, and
        // system calls newer than the libseccomp this is built with.
        let p = parse(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                "syscalls": [{"names": ["getpid", "mseal", "open_tree_attr"], "action": "SCMP_ACT_ALLOW",
                "args": [], "comment": "", "includes": {}, "excludes": {}},
                {"name": "kill", "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
        )
        .unwrap();
        assert_eq!(p.default_action, Action::Errno(38));
        assert_eq!(p.rules[1].names, ["kill"]);
        assert_eq!(p.rules[0].includes, Conditions::default());
    }

    #[test]
    fn kernel_versions_read_as_major_minor() {
        assert_eq!(kernel_version("4.8"), Some((4, 8)));
        assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(kernel_version("5"), Some((5, 0)));
        assert_eq!(kernel_version("x.1"), None);
    }
}
