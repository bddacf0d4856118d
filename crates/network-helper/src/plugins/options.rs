//! `--opt key=value` parsing shared by the plugins.

use std::collections::BTreeMap;

use container_protocol::network::PluginKind;

use crate::error::PluginError;

/// Smallest MTU the kernel accepts for IPv4 (RFC 791).
pub const MTU_MIN: u32 = 68;
pub const MTU_MAX: u32 = 65535;
/// IPv6 refuses to run on links below this (RFC 8200), so a dual-stack network needs it.
const MTU_MIN_V6: u32 = 1280;

/// The options of one plugin, checked against the keys it knows.
pub(crate) struct Opts<'a> {
    plugin: PluginKind,
    map: &'a BTreeMap<String, String>,
}

impl<'a> Opts<'a> {
    /// Fails on the first key not in `known`, naming it and the plugin.
    pub fn new(
        plugin: PluginKind,
        map: &'a BTreeMap<String, String>,
        known: &'static [&'static str],
    ) -> Result<Self, PluginError> {
        if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(PluginError::UnknownOption {
                plugin,
                key: key.clone(),
                known,
            });
        }
        Ok(Opts { plugin, map })
    }

    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.map.get(key).map(String::as_str)
    }

    pub fn required(&self, key: &'static str) -> Result<&'a str, PluginError> {
        match self.get(key) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(PluginError::MissingOption {
                plugin: self.plugin,
                key,
            }),
        }
    }

    pub fn invalid(
        &self,
        key: &'static str,
        value: &str,
        reason: impl Into<String>,
    ) -> PluginError {
        PluginError::InvalidOption {
            plugin: self.plugin,
            key,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// `mtu=N`, in range for the families the network carries.
    pub fn mtu(&self, v6: bool) -> Result<Option<u32>, PluginError> {
        let Some(value) = self.get("mtu") else {
            return Ok(None);
        };
        let min = if v6 { MTU_MIN_V6 } else { MTU_MIN };
        match value.parse::<u32>() {
            Ok(mtu) if (min..=MTU_MAX).contains(&mtu) => Ok(Some(mtu)),
            _ if v6 => Err(self.invalid(
                "mtu",
                value,
                format!(
                    "must be a number from {min} to {MTU_MAX} (IPv6 needs at least {MTU_MIN_V6})"
                ),
            )),
            _ => Err(self.invalid(
                "mtu",
                value,
                format!("must be a number from {min} to {MTU_MAX}"),
            )),
        }
    }

    /// An interface name option (`bridge=`, `parent=`), as the kernel would accept it.
    pub fn ifname(&self, key: &'static str, value: &str) -> Result<(), PluginError> {
        container_netlink::valid_ifname(value).map_err(|e| {
            let reason = match e {
                container_netlink::Error::Invalid { reason, .. } => reason,
                other => other.to_string(),
            };
            self.invalid(key, value, format!("not a valid interface name: {reason}"))
        })
    }
}
