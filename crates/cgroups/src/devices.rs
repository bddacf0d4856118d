//! Which devices a container may create (mknod), read and write: the devices cgroup's
//! rules on v1, an eBPF program (`bpf.rs`) on v2. Everything not allowed is denied.

use std::fmt;

/// Block, character, or both (`a`, only with both numbers a wildcard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    All,
    Block,
    Char,
}

/// Access bits as the devices cgroup writes them: `r`, `w`, `m` (mknod).
pub const READ: u8 = 1 << 1;
pub const WRITE: u8 = 1 << 2;
pub const MKNOD: u8 = 1 << 0;
pub const RWM: u8 = READ | WRITE | MKNOD;

/// One allow rule. `None` numbers are wildcards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// [`READ`] | [`WRITE`] | [`MKNOD`].
    pub access: u8,
}

impl DeviceRule {
    pub const fn char(major: u32, minor: Option<u32>, access: u8) -> DeviceRule {
        DeviceRule {
            kind: DeviceKind::Char,
            major: Some(major),
            minor,
            access,
        }
    }

    /// Every device, every access: `--privileged`.
    pub const fn everything() -> DeviceRule {
        DeviceRule {
            kind: DeviceKind::All,
            major: None,
            minor: None,
            access: RWM,
        }
    }

    /// Parses `rwm`-style permissions (any order, each at most once, not empty).
    pub fn parse_access(text: &str) -> Option<u8> {
        let mut access = 0u8;
        for c in text.chars() {
            let bit = match c {
                'r' => READ,
                'w' => WRITE,
                'm' => MKNOD,
                _ => return None,
            };
            if access & bit != 0 {
                return None;
            }
            access |= bit;
        }
        (access != 0).then_some(access)
    }

    pub fn access_string(access: u8) -> String {
        let mut s = String::new();
        for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
            if access & bit != 0 {
                s.push(c);
            }
        }
        s
    }
}

/// `c 1:3 rwm`, `b *:* m`, `a`: what `devices.allow` takes.
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == DeviceKind::All {
            return f.write_str("a");
        }
        let kind = if self.kind == DeviceKind::Block {
            'b'
        } else {
            'c'
        };
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{kind} {}:{} {}",
            num(self.major),
            num(self.minor),
            Self::access_string(self.access)
        )
    }
}

/// Docker's default allow-list: any device may be created (so images that mknod in
/// their set-up work), and only these may be opened: null, zero, full, random, urandom,
/// tty, console, ptmx and the pts slaves. A block device made by mknod can't be read
/// or written.
pub const DEFAULT_RULES: [DeviceRule; 11] = [
    DeviceRule {
        kind: DeviceKind::Char,
        major: None,
        minor: None,
        access: MKNOD,
    },
    DeviceRule {
        kind: DeviceKind::Block,
        major: None,
        minor: None,
        access: MKNOD,
    },
    DeviceRule::char(1, Some(3), RWM), // null
    DeviceRule::char(1, Some(5), RWM), // zero
    DeviceRule::char(1, Some(7), RWM), // full
    DeviceRule::char(1, Some(8), RWM), // random
    DeviceRule::char(1, Some(9), RWM), // urandom
    DeviceRule::char(5, Some(0), RWM), // tty
    DeviceRule::char(5, Some(1), RWM), // console
    DeviceRule::char(5, Some(2), RWM), // ptmx
    DeviceRule::char(136, None, RWM),  // pts/*
];

/// Whether `rules` let `access` on a device of `kind` `major:minor` through: the same
/// decision the v1 controller and the eBPF program make (tests compare them).
pub fn allows(rules: &[DeviceRule], kind: DeviceKind, major: u32, minor: u32, access: u8) -> bool {
    rules.iter().any(|r| {
        (r.kind == DeviceKind::All || r.kind == kind)
            && r.major.is_none_or(|m| m == major)
            && r.minor.is_none_or(|m| m == minor)
            && access & !r.access == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_print_as_the_v1_controller_reads_them() {
        let shown: Vec<String> = DEFAULT_RULES.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown[0], "c *:* m");
        assert_eq!(shown[1], "b *:* m");
        assert_eq!(shown[2], "c 1:3 rwm");
        assert_eq!(shown[10], "c 136:* rwm");
        assert_eq!(DeviceRule::everything().to_string(), "a");
        assert_eq!(DeviceRule::parse_access("mrw"), Some(RWM));
        assert_eq!(DeviceRule::parse_access("rr"), None);
        assert_eq!(DeviceRule::parse_access(""), None);
        assert_eq!(DeviceRule::parse_access("x"), None);
    }

    #[test]
    fn the_default_list_lets_mknod_through_but_not_block_reads() {
        assert!(allows(&DEFAULT_RULES, DeviceKind::Block, 8, 0, MKNOD));
        assert!(!allows(&DEFAULT_RULES, DeviceKind::Block, 8, 0, READ));
        assert!(allows(&DEFAULT_RULES, DeviceKind::Char, 1, 3, READ | WRITE));
        assert!(allows(&DEFAULT_RULES, DeviceKind::Char, 136, 7, READ));
        assert!(
            !allows(&DEFAULT_RULES, DeviceKind::Char, 1, 1, READ),
            "/dev/mem"
        );
    }
}
