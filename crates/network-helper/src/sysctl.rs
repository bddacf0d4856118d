//! Kernel knobs under /proc/sys, written directly: no `sysctl` binary to shell out to.
//!
//! Network sysctls belong to the network namespace of the thread that opens the file,
//! which is the helper's (the host's) namespace.

use std::path::PathBuf;

use crate::error::PluginError;

/// Sets `/proc/sys/<key>` (slash-separated, e.g. `net/ipv4/ip_forward`) to `value`,
/// skipping the write when it already holds it.
pub fn set(key: &str, value: &str) -> Result<(), PluginError> {
    let path = PathBuf::from("/proc/sys").join(key);
    if let Ok(current) = std::fs::read_to_string(&path) {
        if current.trim() == value {
            return Ok(());
        }
    }
    std::fs::write(&path, value).map_err(|source| PluginError::Io {
        path,
        step: "write sysctl",
        source,
    })
}
