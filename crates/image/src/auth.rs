//! Registry credentials as Docker keeps them: `$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, with `auths` (base64 `user:password`), `credsStore` and
//! `credHelpers` (`docker-credential-NAME get`). Read by the CLI, as the user who runs
//! it, and sent with the call; the apiserver never reads a user's files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, ImageError, Result};
use crate::reference::DOCKER_HUB;

/// How Docker names Docker Hub in `auths`.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(
        default,
        rename = "identitytoken",
        skip_serializing_if = "Option::is_none"
    )]
    identity_token: Option<String>,
}

/// The file's keys we use; the rest is kept as it was when we write it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(
        default,
        rename = "credsStore",
        skip_serializing_if = "Option::is_none"
    )]
    creds_store: Option<String>,
    #[serde(
        default,
        rename = "credHelpers",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    cred_helpers: BTreeMap<String, String>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".docker/config.json")
}

/// The key a registry has in `auths`.
pub fn key_for(registry: &str) -> String {
    if registry == DOCKER_HUB || registry == "index.docker.io" || registry == "registry-1.docker.io"
    {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

fn load(path: &Path) -> Result<DockerConfig> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig::default()),
        Err(e) => Err(ImageError::io(format!("read {}", path.display()))(e)),
    }
}

/// The credentials for `registry`: a credential helper's when one is configured for
/// it (or for all), else `auths`. `None`: anonymous.
pub fn lookup(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let config = load(path)?;
    let key = key_for(registry);
    let helper = config
        .cred_helpers
        .get(&key)
        .or(config.cred_helpers.get(registry))
        .or(config.creds_store.as_ref());
    if let Some(helper) = helper {
        if let Some(c) = from_helper(helper, &key)? {
            return Ok(Some(c));
        }
    }
    let entry = [
        key.clone(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        registry.to_string(),
    ]
    .iter()
    .find_map(|k| config.auths.get(k));
    let Some(entry) = entry else { return Ok(None) };
    if let Some(auth) = &entry.auth {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| {
                invalid(format!(
                    "{}: auths.{key}.auth is not base64: {e}",
                    path.display()
                ))
            })?;
        let text = String::from_utf8(raw)
            .map_err(|_| invalid(format!("{}: auths.{key}.auth is not text", path.display())))?;
        let (u, p) = text.split_once(':').ok_or_else(|| {
            invalid(format!(
                "{}: auths.{key}.auth is not user:password",
                path.display()
            ))
        })?;
        return Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Ok(None),
    }
}

/// `docker-credential-NAME get`, the registry on stdin. A helper that knows nothing
/// of the registry is no error.
fn from_helper(name: &str, key: &str) -> Result<Option<Credentials>> {
    use std::io::Write;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(invalid(format!(
            "credential helper name {name:?} is not valid"
        )));
    }
    let program = format!("docker-credential-{name}");
    let mut child = match std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(invalid(format!(
                "credential helper {program} is configured but not installed"
            )))
        }
        Err(e) => return Err(ImageError::io(format!("run {program}"))(e)),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(key.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(ImageError::io(format!("run {program}")))?;
    if !out.status.success() {
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(&out.stdout)
        .map_err(|e| invalid(format!("{program} get: unreadable answer: {e}")))?;
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
    }))
}

/// `registry login`: keeps the credentials in `auths` (mode 0600), as Docker does
/// without a credential store.
pub fn store(path: &Path, registry: &str, c: &Credentials) -> Result<()> {
    let mut config = load(path)?;
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
    config.auths.insert(
        key_for(registry),
        AuthEntry {
            auth: Some(auth),
            ..AuthEntry::default()
        },
    );
    write(path, &config)
}

/// `registry logout`: whether there was something to forget.
pub fn erase(path: &Path, registry: &str) -> Result<bool> {
    let mut config = load(path)?;
    let removed = config.auths.remove(&key_for(registry)).is_some();
    if removed {
        write(path, &config)?;
    }
    Ok(removed)
}

fn write(path: &Path, config: &DockerConfig) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(config).map_err(|e| invalid(e.to_string()))?;
    bytes.push(b'\n');
    container_store::write_atomic(path, &bytes, 0o600).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_round_trips_and_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}},"psFormat":"x"}"#,
        )
        .unwrap();
        let hub = lookup(&path, "docker.io").unwrap().unwrap();
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("u", "p"));
        assert_eq!(lookup(&path, "localhost:5000").unwrap(), None);
        let c = Credentials {
            username: "me".into(),
            password: "s3:cret".into(),
        };
        store(&path, "localhost:5000", &c).unwrap();
        assert_eq!(lookup(&path, "localhost:5000").unwrap(), Some(c));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("psFormat"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(erase(&path, "localhost:5000").unwrap());
        assert!(!erase(&path, "localhost:5000").unwrap());
        assert_eq!(lookup(&path, "localhost:5000").unwrap(), None);
    }
}
