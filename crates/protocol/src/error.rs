use serde::{Deserialize, Serialize};

/// What kind of failure a call met, decided by the layer that knows (containerd's
/// errdefs). It travels with the message, so the CLI can pick an exit code and callers
/// can branch on it without reading words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The named object does not exist.
    NotFound,
    /// The request is malformed or asks for something impossible.
    Invalid,
    /// The request clashes with the current state (already exists, in use, running).
    Conflict,
    /// A helper the call needed is gone (died, or shut down).
    Gone,
    /// A helper did not answer in time.
    Unavailable,
    /// The caller may not do this.
    Permission,
    /// The command exists but cannot be executed (Docker's 126).
    NotExecutable,
    /// The command does not exist (Docker's 127).
    CommandNotFound,
    /// Anything else: a bug, or the host refusing (I/O, netlink).
    Internal,
}

impl ErrorKind {
    /// The CLI's exit code for a failure of this kind, as Docker documents them: 125
    /// when the runtime itself failed, 126 and 127 for the command, 1 when an object
    /// named on the command line does not exist.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::NotFound => 1,
            ErrorKind::NotExecutable => 126,
            ErrorKind::CommandNotFound => 127,
            _ => 125,
        }
    }
}

/// An error the remote side returned for one call; the connection stays usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub kind: ErrorKind,
    pub message: String,
}

impl RemoteError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RemoteError {
            kind,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        RemoteError::new(ErrorKind::Internal, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        RemoteError::new(ErrorKind::Invalid, message)
    }

    pub fn with_kind(self, kind: ErrorKind) -> Self {
        RemoteError { kind, ..self }
    }

    /// The same kind, with the caller's context in front: each layer adds its own once.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        RemoteError {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The peer closed the connection or died: every pending and later call on this
    /// endpoint fails with this, at once. Nothing reconnects.
    #[error("{peer} is gone")]
    Gone { peer: String },
    /// The peer did not answer within the call's deadline; it may still be alive.
    #[error("{peer} did not answer {what} within {secs}s")]
    Timeout {
        peer: String,
        what: String,
        secs: u64,
    },
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

    pub fn kind(&self) -> ErrorKind {
        match self {
            ProtocolError::Gone { .. } => ErrorKind::Gone,
            ProtocolError::Timeout { .. } => ErrorKind::Unavailable,
            ProtocolError::Refused { message, .. } if message.contains("permission denied") => {
                ErrorKind::Permission
            }
            ProtocolError::Remote(r) => r.kind,
            _ => ErrorKind::Internal,
        }
    }
}

/// Errors that travel together: several independent steps that failed (a teardown
/// that keeps going past each failure), or one failure and the failures of undoing it.
#[derive(Debug)]
pub struct Failures<E> {
    /// What failed: the error that made us undo, or each of several independent steps.
    pub errors: Vec<E>,
    /// What failed while undoing `errors`.
    pub undo: Vec<E>,
}

impl<E> Failures<E> {
    /// `Ok` when nothing failed; otherwise every failure.
    pub fn check(errors: Vec<E>) -> Result<(), Failures<E>> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Failures {
                errors,
                undo: Vec::new(),
            })
        }
    }

    /// `error`, and what went wrong while undoing the steps before it.
    pub fn with_undo(error: E, undo: Vec<E>) -> Failures<E> {
        Failures {
            errors: vec![error],
            undo,
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for Failures<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |list: &[E]| {
            list.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        };
        f.write_str(&join(&self.errors))?;
        if !self.undo.is_empty() {
            write!(f, " (undoing it also failed: {})", join(&self.undo))?;
        }
        Ok(())
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for Failures<E> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_docker_exit_codes() {
        assert_eq!(ErrorKind::NotFound.exit_code(), 1);
        assert_eq!(ErrorKind::NotExecutable.exit_code(), 126);
        assert_eq!(ErrorKind::CommandNotFound.exit_code(), 127);
        for k in [
            ErrorKind::Invalid,
            ErrorKind::Conflict,
            ErrorKind::Gone,
            ErrorKind::Unavailable,
            ErrorKind::Permission,
            ErrorKind::Internal,
        ] {
            assert_eq!(k.exit_code(), 125, "{k:?}");
        }
    }

    #[test]
    fn context_keeps_the_kind() {
        let e = RemoteError::new(ErrorKind::CommandNotFound, "exec \"nosuch\": not found")
            .context("container c1: start");
        assert_eq!(e.kind, ErrorKind::CommandNotFound);
        assert_eq!(e.message, "container c1: start: exec \"nosuch\": not found");
    }

    #[test]
    fn failures_read_as_one_line() {
        assert!(Failures::<String>::check(vec![]).is_ok());
        let many = Failures::check(vec!["a".to_string(), "b".to_string()]).unwrap_err();
        assert_eq!(many.to_string(), "a; b");
        let undo = Failures::with_undo("c".to_string(), vec!["d".to_string()]);
        assert_eq!(undo.to_string(), "c (undoing it also failed: d)");
    }
}
