//! The CNI error object (SPEC.md, "Error"): a code, a one-line `msg`, and `details`.
//!
//! Codes 1–99 are the spec's; 100 and up are this plugin's own, listed here and in
//! docs/kubernetes.md.

use serde_json::{json, Value};

/// The config's `cniVersion` is not one this plugin speaks, or a `prevResult` is of
/// another version than the config.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// A config field this plugin knows but cannot honour (`vlan`, a non-host-local IPAM).
pub const UNSUPPORTED_FIELD: u32 = 2;
/// The container (its netns) does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// A `CNI_*` variable is missing, empty or malformed.
pub const INVALID_ENV: u32 = 4;
pub const IO_FAILURE: u32 = 5;
/// stdin is not JSON, or a `prevResult` is not a result.
pub const DECODE: u32 = 6;
pub const INVALID_CONFIG: u32 = 7;
/// STATUS: the plugin cannot serve ADDs now.
pub const NOT_AVAILABLE: u32 = 50;
/// `CNI_IFNAME` already exists in the container's netns.
pub const INTERFACE_EXISTS: u32 = 100;
/// IPAM refused: range exhausted, address taken, attachment already holds one.
pub const IPAM: u32 = 101;
/// CHECK found the container's networking not as `prevResult` says.
pub const CHECK_FAILED: u32 = 102;
/// A netlink, sysctl or nftables call failed.
pub const KERNEL: u32 = 103;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({"cniVersion": cni_version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

impl From<container_netlink::Error> for CniError {
    fn from(e: container_netlink::Error) -> Self {
        CniError::new(KERNEL, "netlink request failed").details(e.to_string())
    }
}

impl From<container_ipam::IpamError> for CniError {
    fn from(e: container_ipam::IpamError) -> Self {
        use container_ipam::IpamError as E;
        let code = match &e {
            E::Io { .. } => IO_FAILURE,
            E::InvalidName { .. } | E::InvalidRange { .. } | E::NoRangeSets => INVALID_CONFIG,
            _ => IPAM,
        };
        CniError::new(code, "IPAM failed").details(e.to_string())
    }
}
