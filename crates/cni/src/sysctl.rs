//! Forwarding for a gateway bridge, written to /proc/sys of this process's netns.

use crate::error::{CniError, KERNEL};

pub fn enable(key: &str) -> Result<(), CniError> {
    let path = format!("/proc/sys/{key}");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(&path, "1")
        .map_err(|e| CniError::new(KERNEL, format!("could not set {key}")).details(e.to_string()))
}
