//! CNI network configuration lists (`*.conflist`), as far as the runtime must read them.

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::error::PluginError;

/// A parsed conflist. Plugin entries stay raw JSON: each plugin defines its own keys and
/// gets them back verbatim on stdin.
#[derive(Debug, Clone)]
pub struct Conflist {
    pub path: PathBuf,
    pub cni_version: String,
    pub name: String,
    pub disable_check: bool,
    pub plugins: Vec<Map<String, Value>>,
}

impl Conflist {
    pub fn load(path: &Path) -> Result<Conflist, PluginError> {
        let bad = |reason: String| PluginError::Conflist {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(format!("read: {e}")))?;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let Value::Object(top) = value else {
            return Err(bad("not a JSON object".into()));
        };
        let string = |key: &str| match top.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(bad(format!("{key:?} must be a non-empty string"))),
        };
        let cni_version = string("cniVersion")?;
        let name = string("name")?;
        let disable_check = matches!(top.get("disableCheck"), Some(Value::Bool(true)));
        let Some(Value::Array(list)) = top.get("plugins") else {
            return Err(bad("\"plugins\" must be an array".into()));
        };
        if list.is_empty() {
            return Err(bad("\"plugins\" is empty".into()));
        }
        let mut plugins = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let Value::Object(conf) = entry else {
                return Err(bad(format!("plugins[{i}] is not an object")));
            };
            match conf.get("type") {
                // The type names a binary looked up in CNI_PATH: a path would escape it.
                Some(Value::String(t)) if valid_type(t) => {}
                Some(Value::String(t)) => {
                    return Err(bad(format!(
                        "plugins[{i}].type {t:?} must be a plain binary name"
                    )))
                }
                _ => return Err(bad(format!("plugins[{i}] has no \"type\" string"))),
            }
            plugins.push(conf.clone());
        }
        Ok(Conflist {
            path: path.to_path_buf(),
            cni_version,
            name,
            disable_check,
            plugins,
        })
    }

    /// Whether some plugin of the list declares `capability` (`"capabilities": {"ips":
    /// true}`): only then does the runtime pass it in `runtimeConfig`, as libcni does.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.plugins.iter().any(|p| declares(p, capability))
    }

    /// The subnets the list's IPAM sections hand addresses from: host-local's
    /// `ranges` (`[[{"subnet": …}]]`) and its older single `subnet`.
    pub fn declared_subnets(&self) -> Vec<IpNet> {
        let mut out = Vec::new();
        for ipam in self.plugins.iter().filter_map(|p| p.get("ipam")) {
            let mut push = |v: Option<&Value>| {
                if let Some(net) = v
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<IpNet>().ok())
                {
                    let net = net.trunc();
                    if !out.contains(&net) {
                        out.push(net);
                    }
                }
            };
            push(ipam.get("subnet"));
            for set in ipam
                .get("ranges")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for range in set.as_array().into_iter().flatten() {
                    push(range.get("subnet"));
                }
            }
        }
        out
    }

    /// CHECK exists from CNI 0.4.0 on.
    pub fn supports_check(&self) -> bool {
        !matches!(
            self.cni_version.as_str(),
            "0.1.0" | "0.2.0" | "0.3.0" | "0.3.1"
        )
    }
}

fn valid_type(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains('/') && !t.contains('\0')
}

/// Whether one plugin entry declares `capability`.
pub fn declares(conf: &Map<String, Value>, capability: &str) -> bool {
    conf.get("capabilities")
        .and_then(|c| c.get(capability))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub fn plugin_type(conf: &Map<String, Value>) -> &str {
    conf.get("type").and_then(Value::as_str).unwrap_or_default()
}
