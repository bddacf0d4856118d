//! The sandbox helper's service (one helper per container).

use serde::{Deserialize, Serialize};

use crate::helper::HelperInfo;

pub const SERVICE: &str = "sandbox-helper";

#[derive(Debug, Serialize, Deserialize)]
pub enum SandboxRequest {
    Info,
    Echo(u64),
    /// Resolves when the workload has exited; pending until then.
    Wait,
    /// Tear down and exit. The helper never exits on its own.
    Shutdown,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum SandboxResponse {
    Info(HelperInfo),
    Echo(u64),
    Exited(ExitStatus),
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, or 128 + signal number when killed by a signal (as shells report it).
    pub code: i32,
    pub signal: Option<i32>,
}
