//! The apiserver's service: the only one clients talk to.

use serde::{Deserialize, Serialize};

use crate::helper::HelperKind;

pub const SERVICE: &str = "apiserver";

#[derive(Debug, Serialize, Deserialize)]
pub enum ApiRequest {
    Echo(u64),
    Status,
    /// Stop the apiserver. With `helpers`, shut every helper down first (a user's
    /// `system stop`); without, helpers keep running (a supervisor's restart).
    Stop {
        helpers: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ApiResponse {
    Echo(u64),
    Status(SystemStatus),
    Done,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemStatus {
    pub version: String,
    pub pid: u32,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub uptime_secs: u64,
    pub root: String,
    pub run_dir: String,
    pub helpers: Vec<HelperStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelperStatus {
    pub kind: HelperKind,
    pub id: String,
    pub pid: u32,
    pub started: u64,
}
