//! Input checks, run before nft so a bad argument never reaches the kernel.
//!
//! The batch is JSON, so quoting is not what these protect against; they keep names
//! within what nftables and the kernel accept (so the failure names the argument, not
//! an nft parse position) and keep chain names decodable back to network ids.

use std::net::IpAddr;

use crate::{Error, NetworkRules, PortForward, Subject};

/// `nft` comments are at most 128 bytes, and the container id is stored as one.
const MAX_CONTAINER_ID: usize = 128;
const MAX_NETWORK_ID: usize = 63;
/// IFNAMSIZ minus the terminating NUL.
const MAX_IFNAME: usize = 15;
const MAX_TABLE: usize = 64;

fn invalid(subject: &Subject, field: &'static str, value: &str, reason: &str) -> Error {
    Error::Invalid {
        subject: subject.clone(),
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

pub(crate) fn network_id(subject: &Subject, id: &str) -> Result<(), Error> {
    let reason = if id.is_empty() {
        "must not be empty"
    } else if id.len() > MAX_NETWORK_ID {
        "must be at most 63 bytes"
    } else if !id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        "must start with [a-z0-9]"
    } else if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    {
        "must contain only [a-z0-9._-]"
    } else {
        return Ok(());
    };
    Err(invalid(subject, "network id", id, reason))
}

/// The kernel's rule for interface names (`dev_valid_name`), minus control characters
/// that would only ever be a mistake.
pub(crate) fn ifname(subject: &Subject, name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name.len() > MAX_IFNAME {
        "must be at most 15 bytes"
    } else if name == "." || name == ".." {
        "must not be . or .."
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        "must not contain '/', ':', whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(invalid(subject, "bridge name", name, reason))
}

pub(crate) fn container_id(subject: &Subject, id: &str) -> Result<(), Error> {
    let reason = if id.is_empty() {
        "must not be empty"
    } else if id.len() > MAX_CONTAINER_ID {
        "must be at most 128 bytes"
    } else if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must not contain whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(invalid(subject, "container id", id, reason))
}

pub(crate) fn table(name: &str) -> Result<(), Error> {
    let subject = Subject::Table(name.to_string());
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name.len() > MAX_TABLE {
        "must be at most 64 bytes"
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        "must start with [A-Za-z0-9]"
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        "must contain only [A-Za-z0-9_-]"
    } else {
        return Ok(());
    };
    Err(invalid(&subject, "table name", name, reason))
}

pub(crate) fn network(net: &NetworkRules) -> Result<(), Error> {
    let subject = Subject::Network(net.id.clone());
    network_id(&subject, &net.id)?;
    ifname(&subject, &net.bridge)?;
    if net.subnets.is_empty() {
        return Err(invalid(
            &subject,
            "subnets",
            "[]",
            "must list at least one subnet",
        ));
    }
    Ok(())
}

/// `0.0.0.0` / `::` mean "every address of that family", like a wildcard bind.
pub(crate) fn effective_host_ip(forward: &PortForward) -> Option<IpAddr> {
    forward.host_ip.filter(|ip| !ip.is_unspecified())
}

pub(crate) fn port_forwards(subject: &Subject, forwards: &[PortForward]) -> Result<(), Error> {
    for (i, forward) in forwards.iter().enumerate() {
        let value = forward.to_string();
        let bad = |reason: &str| invalid(subject, "port forward", &value, reason);
        if forward.host_port == 0 || forward.container_port == 0 {
            return Err(bad("ports must not be 0"));
        }
        let ip = forward.container_ip;
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
            return Err(bad(
                "container address must be a unicast, non-loopback address",
            ));
        }
        if let Some(host) = forward.host_ip {
            if host.is_ipv4() != ip.is_ipv4() {
                return Err(bad("host and container addresses must be of one family"));
            }
        }
        // nft would accept both rules, but the first one shadows the second, so the
        // second forward would silently never work.
        let clash = forwards[..i].iter().any(|earlier| {
            earlier.protocol == forward.protocol
                && earlier.host_port == forward.host_port
                && earlier.container_ip.is_ipv4() == ip.is_ipv4()
                && match (effective_host_ip(earlier), effective_host_ip(forward)) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        });
        if clash {
            return Err(bad("overlaps an earlier forward of the same host port"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    fn subject() -> Subject {
        Subject::Network("n1".into())
    }

    #[test]
    fn network_ids() {
        for good in ["n1", "0", "a.b_c-d", &"a".repeat(63)] {
            assert!(network_id(&subject(), good).is_ok(), "{good:?}");
        }
        for bad in ["", "-a", ".a", "A", "a b", "a/b", "é", &"a".repeat(64)] {
            assert!(network_id(&subject(), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ifnames() {
        for good in ["br0", "cbr-n1", "a.b", &"b".repeat(15)] {
            assert!(ifname(&subject(), good).is_ok(), "{good:?}");
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "a\nb", &"b".repeat(16)] {
            assert!(ifname(&subject(), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn container_ids() {
        assert!(container_id(&subject(), "abc123").is_ok());
        for bad in ["", "a b", "a\tb", &"c".repeat(129)] {
            assert!(container_id(&subject(), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tables() {
        assert!(table("container").is_ok());
        assert!(table("t_1-x").is_ok());
        for bad in ["", "-x", "a b", "a\"b", &"t".repeat(65)] {
            assert!(table(bad).is_err(), "{bad:?}");
        }
    }

    fn fwd(host_ip: Option<&str>, host_port: u16, ip: &str, port: u16) -> PortForward {
        PortForward {
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port,
            container_ip: ip.parse().unwrap(),
            container_port: port,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn port_forward_checks() {
        let ok = [
            fwd(None, 80, "10.0.0.2", 80),
            fwd(None, 80, "fd00::2", 80),
            fwd(Some("127.0.0.1"), 81, "10.0.0.2", 80),
            fwd(Some("127.0.0.2"), 81, "10.0.0.2", 80),
        ];
        assert!(port_forwards(&subject(), &ok).is_ok());
        let bad: [&[PortForward]; 6] = [
            &[fwd(None, 0, "10.0.0.2", 80)],
            &[fwd(None, 80, "10.0.0.2", 0)],
            &[fwd(None, 80, "0.0.0.0", 80)],
            &[fwd(Some("::1"), 80, "10.0.0.2", 80)],
            &[fwd(None, 80, "10.0.0.2", 80), fwd(None, 80, "10.0.0.3", 81)],
            &[
                fwd(Some("0.0.0.0"), 80, "10.0.0.2", 80),
                fwd(Some("127.0.0.1"), 80, "10.0.0.3", 81),
            ],
        ];
        for forwards in bad {
            assert!(port_forwards(&subject(), forwards).is_err(), "{forwards:?}");
        }
    }
}
