use container_protocol::{ProtocolError, RemoteError};
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
}

impl ApiError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ApiError {
        let what = what.into();
        move |source| ApiError::Io { what, source }
    }
}

impl From<ApiError> for RemoteError {
    fn from(e: ApiError) -> Self {
        RemoteError::new(e.to_string())
    }
}
