use container_protocol::{ErrorKind, ProtocolError, RemoteError};
use container_store::StoreError;

/// Everything an apiserver operation can fail with. The text reaches the user as is,
/// so each variant names the object and the step.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Store(#[from] StoreError),
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
    #[error("{0}")]
    Conflict(String),
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
}

impl ApiError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::Protocol(e) => e.kind(),
            ApiError::Store(e) => e.kind(),
            ApiError::Io { .. } => ErrorKind::Internal,
            ApiError::Invalid(_) => ErrorKind::Invalid,
            ApiError::NotFound { .. } => ErrorKind::NotFound,
            ApiError::Conflict(_) => ErrorKind::Conflict,
            ApiError::Context { source, .. } => source.kind(),
        }
    }

    /// Puts what this layer was doing in front of a lower layer's error, once.
    pub fn context(self, context: impl Into<String>) -> ApiError {
        ApiError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }
}

impl From<ApiError> for RemoteError {
    fn from(e: ApiError) -> Self {
        RemoteError::new(e.kind(), e.to_string())
    }
}
