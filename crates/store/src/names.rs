//! Names that become file names: validated once here so no path is ever built from
//! something that could escape its directory.

use crate::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Network,
    Container,
}

impl std::fmt::Display for NameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameKind::Network => "network",
            NameKind::Container => "container",
        })
    }
}

pub const MAX_NAME: usize = 63;

/// `[a-z0-9][a-z0-9._-]*`, at most 63 characters: no separators, no `..`, nothing a
/// shell or a path join could misread.
pub fn validate_id(kind: NameKind, name: &str) -> Result<(), StoreError> {
    let bad = |why: &str| StoreError::InvalidName {
        kind,
        name: name.to_string(),
        why: why.to_string(),
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > MAX_NAME {
        return Err(bad("it is longer than 63 characters"));
    }
    let mut chars = name.chars();
    let first = chars.next().unwrap_or('-');
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(bad("it must start with a lowercase letter or a digit"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(&format!(
            "{c:?} is not allowed (use a-z, 0-9, '.', '_', '-')"
        )));
    }
    if name.contains("..") {
        return Err(bad("it contains '..'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["default", "n1", "a.b_c-d", "0net"] {
            validate_id(NameKind::Network, ok).unwrap();
        }
        for bad in [
            "", "-x", "A", "a/b", "..", "a..b", "x y", "é", ".hidden", "a\0b",
        ] {
            assert!(validate_id(NameKind::Network, bad).is_err(), "{bad:?}");
        }
        assert!(validate_id(NameKind::Network, &"a".repeat(64)).is_err());
        assert!(validate_id(NameKind::Network, &"a".repeat(63)).is_ok());
    }
}
