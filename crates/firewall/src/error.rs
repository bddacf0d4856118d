use std::fmt;

/// What an operation was acting on, so every message starts with the object at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Network(String),
    Table(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Network(id) => write!(f, "network {id}"),
            Subject::Table(name) => write!(f, "table inet {name}"),
        }
    }
}

/// The public operation that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Setup,
    Teardown,
    AddPortForwards { container: String },
    RemovePortForwards { container: String },
    List,
    TeardownAll,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Setup => f.write_str("setup"),
            Step::Teardown => f.write_str("teardown"),
            Step::AddPortForwards { container } => {
                write!(f, "add port forwards of container {container}")
            }
            Step::RemovePortForwards { container } => {
                write!(f, "remove port forwards of container {container}")
            }
            Step::List => f.write_str("list"),
            Step::TeardownAll => f.write_str("teardown all"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Refused before nft ran, so nothing changed.
    #[error("{subject}: invalid {field} {value:?}: {reason}")]
    Invalid {
        subject: Subject,
        field: &'static str,
        value: String,
        reason: String,
    },
    /// Refused before nft ran: taking over the bridge would silently cut the other
    /// network's forwarding.
    #[error("{subject}: nftables setup: bridge {bridge} already belongs to network {other}")]
    BridgeInUse {
        subject: Subject,
        bridge: String,
        other: String,
    },
    #[error("{subject}: nftables {step}: network is not set up")]
    NotSetUp { subject: Subject, step: Step },
    /// nft ran and refused the batch; the transaction was rolled back as a whole.
    #[error("{subject}: nftables {step}: {message}")]
    Nft {
        subject: Subject,
        step: Step,
        message: String,
    },
    #[error("{subject}: nftables {step}: run {program}: {source}")]
    Spawn {
        subject: Subject,
        step: Step,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{subject}: nftables {step}: unreadable `nft -j list` output: {source}")]
    Listing {
        subject: Subject,
        step: Step,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// What the failed call was acting on.
    pub fn subject(&self) -> &Subject {
        match self {
            Error::Invalid { subject, .. }
            | Error::BridgeInUse { subject, .. }
            | Error::NotSetUp { subject, .. }
            | Error::Nft { subject, .. }
            | Error::Spawn { subject, .. }
            | Error::Listing { subject, .. } => subject,
        }
    }

    /// The message without its subject, for a caller whose own context already names
    /// the network: `nftables setup: …` rather than `network n1: nftables setup: …`.
    pub fn detail(&self) -> String {
        let full = self.to_string();
        let prefix = format!("{}: ", self.subject());
        match full.strip_prefix(&prefix) {
            Some(rest) => rest.to_string(),
            None => full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_drops_only_the_subject() {
        let e = Error::NotSetUp {
            subject: Subject::Network("n1".into()),
            step: Step::Setup,
        };
        assert_eq!(
            e.to_string(),
            "network n1: nftables setup: network is not set up"
        );
        assert_eq!(e.detail(), "nftables setup: network is not set up");
    }
}
