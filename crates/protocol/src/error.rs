use serde::{Deserialize, Serialize};

/// An error the remote side returned for one call; the connection stays usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub message: String,
}

impl RemoteError {
    pub fn new(message: impl Into<String>) -> Self {
        RemoteError {
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The peer closed the connection or died: every pending and later call on this
    /// endpoint fails with this, at once. Nothing reconnects.
    #[error("{peer} is gone")]
    Gone { peer: String },
    #[error("{peer}: {source}")]
    Io {
        peer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{peer}: encode: {message}")]
    Encode { peer: String, message: String },
    #[error("{peer}: malformed frame: {message}")]
    Malformed { peer: String, message: String },
    #[error("{peer}: protocol version {theirs} is not supported (this side speaks {ours})")]
    Version {
        peer: String,
        ours: u32,
        theirs: u32,
    },
    #[error("{peer}: refused: {message}")]
    Refused { peer: String, message: String },
    #[error("{peer}: expected {expected} file descriptor(s), got {got}")]
    MissingFds {
        peer: String,
        expected: usize,
        got: usize,
    },
    #[error("{0}")]
    Remote(#[from] RemoteError),
}

impl ProtocolError {
    pub fn is_gone(&self) -> bool {
        matches!(self, ProtocolError::Gone { .. })
    }
}
