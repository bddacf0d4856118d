use container_protocol::ErrorKind;

/// Why an image operation failed. Each message names the object and the step; the
/// kind is decided here, where the failure is known.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The input (a reference, an archive, a layer, a registry's answer) is wrong.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// In use, or clashing with what is there.
    #[error("{0}")]
    Conflict(String),
    /// A registry or the network did not answer as it should.
    #[error("{0}")]
    Unavailable(String),
    /// The registry refused our credentials.
    #[error("{0}")]
    Permission(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<ImageError>,
    },
}

impl ImageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::Invalid(_) => ErrorKind::Invalid,
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::Conflict(_) => ErrorKind::Conflict,
            ImageError::Unavailable(_) => ErrorKind::Unavailable,
            ImageError::Permission(_) => ErrorKind::Permission,
            ImageError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            ImageError::Io { .. } => ErrorKind::Internal,
            ImageError::Context { source, .. } => source.kind(),
        }
    }

    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
        let what = what.into();
        move |source| ImageError::Io { what, source }
    }

    /// What this layer was doing, in front of a lower layer's error, once.
    pub fn context(self, context: impl Into<String>) -> ImageError {
        ImageError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }
}

pub fn invalid(msg: impl Into<String>) -> ImageError {
    ImageError::Invalid(msg.into())
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;
