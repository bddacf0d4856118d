//! Names that end up in paths or in reservation files.

use crate::IpamError;

fn invalid(kind: &'static str, name: &str, reason: &'static str) -> IpamError {
    IpamError::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    }
}

fn path_safe(kind: &'static str, name: &str) -> Result<(), IpamError> {
    if name.is_empty() {
        return Err(invalid(kind, name, "must not be empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid(kind, name, "must not be . or .."));
    }
    if name.contains('/') {
        return Err(invalid(kind, name, "must not contain '/'"));
    }
    if name.contains('\0') {
        return Err(invalid(kind, name, "must not contain NUL"));
    }
    // NAME_MAX: a longer name could never be a directory entry.
    if name.len() > 255 {
        return Err(invalid(kind, name, "must be at most 255 bytes"));
    }
    Ok(())
}

/// A network name becomes the directory `<root>/ipam/<network>`.
pub fn validate_network_name(name: &str) -> Result<(), IpamError> {
    path_safe("network name", name)
}

/// A container id is written into reservation files and may name per-container paths
/// elsewhere. Whitespace and control characters are refused as well: host-local trims
/// the id and uses `\r\n` as the separator, so such an id could not be read back intact.
pub fn validate_container_id(id: &str) -> Result<(), IpamError> {
    path_safe("container id", id)?;
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "container id",
            id,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

/// The kernel's rule for interface names (`dev_valid_name`).
pub fn validate_ifname(name: &str) -> Result<(), IpamError> {
    path_safe("interface name", name)?;
    if name.len() > 15 {
        return Err(invalid("interface name", name, "must be at most 15 bytes"));
    }
    if name
        .chars()
        .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            "interface name",
            name,
            "must not contain ':', whitespace or control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_path_tricks() {
        for bad in ["", ".", "..", "a/b", "a\0b", "/"] {
            assert!(validate_network_name(bad).is_err(), "{bad:?}");
            assert!(validate_container_id(bad).is_err(), "{bad:?}");
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
        assert!(validate_container_id("abc\r\neth0").is_err());
        assert!(validate_container_id("a b").is_err());
        assert!(validate_ifname("eth0:1").is_err());
        assert!(validate_ifname("abcdefghijklmnop").is_err());
        assert!(validate_network_name(&"n".repeat(256)).is_err());
    }

    #[test]
    fn accepts_ordinary_names() {
        validate_network_name("bridge-1").unwrap();
        validate_network_name("..hidden").unwrap();
        validate_container_id("4f3c2b1a-e5d6_x.y").unwrap();
        validate_ifname("eth0").unwrap();
        validate_ifname("abcdefghijklmno").unwrap();
    }
}
