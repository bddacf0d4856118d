//! What every helper answers, whatever its kind.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HelperKind {
    Network,
    Sandbox,
}

impl HelperKind {
    pub const ALL: [HelperKind; 2] = [HelperKind::Network, HelperKind::Sandbox];

    /// Directory name under `<run>/helpers/` and word used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            HelperKind::Network => "network",
            HelperKind::Sandbox => "sandbox",
        }
    }

    pub fn binary(self) -> &'static str {
        match self {
            HelperKind::Network => "container-network-helper",
            HelperKind::Sandbox => "container-sandbox-helper",
        }
    }

    /// The service name a vended endpoint of this kind speaks.
    pub fn service(self) -> &'static str {
        match self {
            HelperKind::Network => "network-helper",
            HelperKind::Sandbox => "sandbox-helper",
        }
    }
}

impl std::fmt::Display for HelperKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperInfo {
    pub kind: HelperKind,
    pub id: String,
    pub pid: u32,
    pub version: String,
    /// Seconds since the Unix epoch.
    pub started: u64,
}

/// "helper sandbox c1": how a helper is named in every error about it.
pub fn peer_name(kind: HelperKind, id: &str) -> String {
    format!("helper {kind} {id}")
}
