//! The network helper's service (one helper per network).

use serde::{Deserialize, Serialize};

use crate::helper::HelperInfo;

pub const SERVICE: &str = "network-helper";

#[derive(Debug, Serialize, Deserialize)]
pub enum NetworkRequest {
    Info,
    Echo(u64),
    /// Exit, keeping the network's resources for the next helper.
    Shutdown,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum NetworkResponse {
    Info(HelperInfo),
    Echo(u64),
    Done,
}
