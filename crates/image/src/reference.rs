//! Image references as Docker reads them: `alpine` is `docker.io/library/alpine:latest`,
//! `localhost:5000/app@sha256:…` names a manifest by digest. The first component is a
//! registry when it has a `.` or a `:`, or is `localhost`; otherwise the image is on
//! Docker Hub, where a single name lives under `library/`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{invalid, ImageError};

pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `quay.io`.
    pub registry: String,
    /// `library/alpine`, `team/app`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, ImageError> {
        let bad = |why: &str| invalid(format!("invalid image reference {text:?}: {why}"));
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it holds a space or a control character"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|e| bad(&e.to_string()))?)),
            None => (text, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a registry's port
        // comes before it).
        let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let first_ok = tag
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if !first_ok
                || tag.len() > MAX_TAG
                || !tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            {
                return Err(bad(&format!(
                    "tag {tag:?} is not valid (letters, digits, _ . -, at most 128, not starting with . or -)"
                )));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        check_registry(&registry).map_err(|w| bad(&w))?;
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase"));
        }
        for component in repository.split('/') {
            check_component(component).map_err(|w| bad(&w))?;
        }
        if registry.len() + 1 + repository.len() > MAX_NAME {
            return Err(bad("name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as Docker shows it: `alpine`, `team/app`, `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        }
    }

    /// The same name with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same name, pinned to `digest`.
    pub fn with_digest(&self, digest: &Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest.clone()),
            ..self.clone()
        }
    }

    /// What the registry API is asked for: the digest when there is one, else the tag.
    pub fn api_registry(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The host part of the registry, without a port.
    pub fn host(&self) -> &str {
        host_of(&self.registry)
    }
}

pub fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

/// `a`, `a-b`, `a__b`, `a.b`: lowercase alphanumerics joined by `.`, `_`, `__` or dashes.
fn check_component(c: &str) -> Result<(), String> {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = !bytes.is_empty()
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes
            .iter()
            .all(|&b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
        && !c.contains("..")
        && !c.contains("___")
        && !c.contains("._")
        && !c.contains("_.")
        && !c.contains(".-")
        && !c.contains("-.");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "repository component {c:?} is not valid (lowercase letters and digits, joined by . _ __ or -)"
        ))
    }
}

fn check_registry(r: &str) -> Result<(), String> {
    let host = host_of(r);
    let port_ok = match r.strip_prefix(host).map(|p| p.trim_start_matches(']')) {
        Some("") | None => true,
        Some(p) => p
            .strip_prefix(':')
            .is_some_and(|n| !n.is_empty() && n.parse::<u16>().is_ok()),
    };
    let ipv6 = r.starts_with('[');
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && (ipv6
            || host.split('.').all(|label| {
                !label.is_empty() && !label.starts_with('-') && !label.ends_with('-')
            }));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!("registry {r:?} is not a host[:port]"))
    }
}

impl fmt::Display for Reference {
    /// The full form: `docker.io/library/alpine:latest`, `name@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for Reference {
    type Error = ImageError;
    fn try_from(s: String) -> Result<Reference, ImageError> {
        Reference::parse(&s)
    }
}

impl From<Reference> for String {
    fn from(r: Reference) -> String {
        r.to_string()
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Reference, ImageError> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Docker's `reference.ParseNormalizedNamed` reads them.
    #[test]
    fn references_normalise_as_docker_does() {
        let d = format!("sha256:{}", "b".repeat(64));
        for (text, want) in [
            ("alpine", "docker.io/library/alpine:latest".to_string()),
            ("alpine:3.19", "docker.io/library/alpine:3.19".to_string()),
            (
                "library/alpine",
                "docker.io/library/alpine:latest".to_string(),
            ),
            ("team/app:v1", "docker.io/team/app:v1".to_string()),
            ("index.docker.io/x/y", "docker.io/x/y:latest".to_string()),
            ("localhost/app", "localhost/app:latest".to_string()),
            ("localhost:5000/app:1", "localhost:5000/app:1".to_string()),
            (
                "127.0.0.1:5000/a/b/c",
                "127.0.0.1:5000/a/b/c:latest".to_string(),
            ),
            ("quay.io/org/img", "quay.io/org/img:latest".to_string()),
            (
                &format!("alpine@{d}"),
                format!("docker.io/library/alpine@{d}"),
            ),
            (
                &format!("alpine:3@{d}"),
                format!("docker.io/library/alpine:3@{d}"),
            ),
            ("a__b/c-d.e_f", "docker.io/a__b/c-d.e_f:latest".to_string()),
        ] {
            let r = Reference::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(r.to_string(), want, "{text}");
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r, "{text} again");
        }
        assert_eq!(
            Reference::parse("alpine").unwrap().familiar_name(),
            "alpine"
        );
        assert_eq!(
            Reference::parse("localhost:5000/app")
                .unwrap()
                .familiar_name(),
            "localhost:5000/app"
        );
        assert_eq!(
            Reference::parse("localhost:5000/app").unwrap().host(),
            "localhost"
        );
    }

    #[test]
    fn bad_references_say_why() {
        for bad in [
            "",
            "Alpine",
            "alpine:",
            "alpine:-x",
            "a b",
            "alpine@sha256:abc",
            "alpine@md5:00",
            "/alpine",
            "alpine/",
            "a//b",
            "a..b/c",
            "-a",
            "localhost:99999/a",
            "bad host!/a",
            &format!("alpine:{}", "t".repeat(129)),
            &format!("x.io/{}", "a".repeat(300)),
        ] {
            let err = Reference::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid image reference"), "{bad:?}: {err}");
        }
    }
}
