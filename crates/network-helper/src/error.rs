use container_protocol::Failures;
use std::path::PathBuf;

use container_protocol::network::PluginKind;

/// Why a plugin refused a configuration or failed a step. Every variant names the object
/// at fault (plugin, option, link, file), so the service only has to prefix the network
/// and the step.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "plugin {plugin}: unknown option {key:?} (known: {})",
        known_list(known)
    )]
    UnknownOption {
        plugin: PluginKind,
        key: String,
        known: &'static [&'static str],
    },

    #[error("plugin {plugin}: invalid value {value:?} for option {key}: {reason}")]
    InvalidOption {
        plugin: PluginKind,
        key: &'static str,
        value: String,
        reason: String,
    },

    #[error("plugin {plugin}: option {key} is required")]
    MissingOption {
        plugin: PluginKind,
        key: &'static str,
    },

    /// The network config itself (subnets, gateways) does not fit the plugin.
    #[error("plugin {plugin}: {reason}")]
    InvalidConfig { plugin: PluginKind, reason: String },

    #[error("macvlan parent link {parent} does not exist")]
    ParentMissing { parent: String },

    #[error("link {name} already exists and is a {kind}, not a bridge")]
    NotABridge { name: String, kind: String },

    /// The attachment asks for something this plugin cannot give.
    #[error("plugin {plugin}: {reason}")]
    Unsupported { plugin: PluginKind, reason: String },

    #[error(transparent)]
    Netlink(#[from] container_netlink::Error),

    /// Without the firewall's own "network <id>: ": the service names the network once.
    #[error("{}", .0.detail())]
    Firewall(#[from] container_firewall::Error),

    #[error(transparent)]
    Ipam(#[from] container_ipam::IpamError),

    #[error("{}: {step}: {source}", path.display())]
    Io {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A background task (a blocking `nft` run) died before answering.
    #[error("{what}: background task failed: {message}")]
    Task { what: &'static str, message: String },

    #[error("{0}")]
    Store(#[from] container_store::StoreError),

    /// A CNI plugin binary failed or answered something unusable.
    #[error("cni plugin {plugin} {command}: {message}")]
    Cni {
        plugin: String,
        command: &'static str,
        message: String,
    },

    #[error("cni conflist {}: {reason}", path.display())]
    Conflist { path: PathBuf, reason: String },

    /// Several independent steps failed (teardown, release keep going), or a step and
    /// its undo: all of them.
    #[error("{0}")]
    Several(Box<Failures<PluginError>>),
}

fn known_list(known: &[&str]) -> String {
    if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    }
}

impl PluginError {
    /// One error from a list of failures, or `Ok` when there are none.
    pub(crate) fn collect(mut errors: Vec<PluginError>) -> Result<(), PluginError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(PluginError::Several(Box::new(Failures {
                errors,
                undo: Vec::new(),
            }))),
        }
    }

    /// `self`, and a failed undo of what came before it, so neither is lost.
    pub(crate) fn with_undo(self, undo: Result<(), PluginError>) -> PluginError {
        match undo {
            Ok(()) => self,
            Err(undo) => PluginError::Several(Box::new(Failures::with_undo(self, vec![undo]))),
        }
    }
}

impl PluginError {
    /// The kind the caller sees: a bad configuration or request, a clash with what is
    /// there, or the host failing us.
    pub fn kind(&self) -> container_protocol::ErrorKind {
        use container_ipam::IpamError as I;
        use container_protocol::ErrorKind as K;
        match self {
            PluginError::UnknownOption { .. }
            | PluginError::InvalidOption { .. }
            | PluginError::MissingOption { .. }
            | PluginError::InvalidConfig { .. }
            | PluginError::Unsupported { .. }
            | PluginError::Conflist { .. } => K::Invalid,
            PluginError::ParentMissing { .. } => K::NotFound,
            PluginError::NotABridge { .. } => K::Conflict,
            PluginError::Ipam(e) => match e {
                I::InvalidName { .. }
                | I::InvalidRange { .. }
                | I::NoRangeSets
                | I::NotInAnyRange { .. }
                | I::ReservedAddress { .. }
                | I::DuplicateRequest { .. } => K::Invalid,
                I::AddressInUse { .. } | I::AlreadyAllocated { .. } | I::Exhausted { .. } => {
                    K::Conflict
                }
                I::Io { .. } | I::GcIncomplete { .. } => K::Internal,
            },
            PluginError::Several(f) => f.errors.first().map_or(K::Internal, PluginError::kind),
            _ => K::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17.1: each layer adds its context once. The service prefixes
    /// `network <id>: <step>: `, so the firewall's part must not name the network again.
    #[test]
    fn a_firewall_error_names_the_network_once() {
        let e = PluginError::Firewall(container_firewall::Error::Invalid {
            subject: container_firewall::Subject::Network("dual".into()),
            field: "port forward",
            value: "tcp [fd99::1]:8081 -> 10.74.0.2:7000".into(),
            reason: "host and container addresses must be of one family".into(),
        });
        assert_eq!(
            e.to_string(),
            "invalid port forward \"tcp [fd99::1]:8081 -> 10.74.0.2:7000\": host and container addresses must be of one family"
        );
    }
}
