use container_protocol::{ErrorKind, ProtocolError, RemoteError};
use container_store::StoreError;
use container_supervise::table::SuperviseError;

/// Everything an apiserver operation can fail with. The text reaches the user as is,
/// so each variant names the object and the step; the kind picks the CLI's exit code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },
    /// Not found, with the whole message said by the layer that knows.
    #[error("{0}")]
    NotFoundMessage(String),
    #[error("{0}")]
    Permission(String),
    #[error("{0}")]
    Conflict(String),
    /// A helper that is alive does not answer, or the apiserver is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The work was done but its record could not be written; the apiserver keeps the
    /// truth in memory and writes it as soon as it can.
    #[error("{0}")]
    Internal(String),
    /// An operation failed and undoing its earlier steps failed too: something may be
    /// left, and the user is told what.
    #[error("{0}")]
    Undone(Box<container_protocol::Failures<ApiError>>),
    /// A failure from a lower layer with what this layer was doing in front; the kind
    /// is the lower layer's.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<ApiError>,
    },
}

impl ApiError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ApiError {
        let what = what.into();
        move |source| ApiError::Io { what, source }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::Protocol(e) => e.kind(),
            ApiError::Store(e) => e.kind(),
            ApiError::Supervise(e) => e.kind(),
            ApiError::Io { .. } | ApiError::Internal(_) => ErrorKind::Internal,
            ApiError::Invalid(_) => ErrorKind::Invalid,
            ApiError::NotFound { .. } | ApiError::NotFoundMessage(_) => ErrorKind::NotFound,
            ApiError::Permission(_) => ErrorKind::Permission,
            ApiError::Conflict(_) => ErrorKind::Conflict,
            ApiError::Unavailable(_) => ErrorKind::Unavailable,
            ApiError::Context { source, .. } => source.kind(),
            ApiError::Undone(f) => f.errors.first().map_or(ErrorKind::Internal, ApiError::kind),
        }
    }

    /// Puts what this layer was doing in front of a lower layer's error, once.
    pub fn context(self, context: impl Into<String>) -> ApiError {
        ApiError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    pub fn is_gone(&self) -> bool {
        match self {
            ApiError::Context { source, .. } => source.is_gone(),
            e => e.kind() == ErrorKind::Gone,
        }
    }

    pub fn is_timeout(&self) -> bool {
        match self {
            ApiError::Protocol(ProtocolError::Timeout { .. }) => true,
            ApiError::Context { source, .. } => source.is_timeout(),
            _ => false,
        }
    }
}

pub fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::Invalid(msg.into())
}

impl From<ApiError> for RemoteError {
    fn from(e: ApiError) -> Self {
        RemoteError::new(e.kind(), e.to_string())
    }
}
