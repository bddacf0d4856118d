use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error names the object it concerns (`link cbr-n1`, `netns /run/x`,
/// `address 10.0.0.2/24 on link eth0 (index 4)`) and the step that failed, so a message
/// that travels up through the helpers and the apiserver still says what broke.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused a request, or a system call failed.
    #[error("{object}: {step}: {source}")]
    Os {
        object: String,
        step: String,
        #[source]
        source: io::Error,
    },
    /// The netlink conversation itself failed: connection gone, unexpected reply.
    #[error("{object}: {step}: {detail}")]
    Protocol {
        object: String,
        step: String,
        detail: String,
    },
    /// Input rejected before anything was sent to the kernel.
    #[error("{object}: {reason}")]
    Invalid { object: String, reason: String },
}

impl Error {
    /// The errno behind an [`Error::Os`], so callers can tell "already there" or "gone"
    /// from real failures without parsing text.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// `EEXIST`: the link, address or route is already there.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// The object is not there: `ENODEV` for links, `EADDRNOTAVAIL` for addresses,
    /// `ESRCH` for routes, `ENOENT` for paths.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV | libc::EADDRNOTAVAIL | libc::ESRCH | libc::ENOENT)
        )
    }

    /// Adds what happened after the failure (a rollback that failed too) to the step.
    pub(crate) fn with_note(self, note: String) -> Self {
        match self {
            Error::Os {
                object,
                step,
                source,
            } => Error::Os {
                object,
                step: format!("{step} ({note})"),
                source,
            },
            Error::Protocol {
                object,
                step,
                detail,
            } => Error::Protocol {
                object,
                step: format!("{step} ({note})"),
                detail,
            },
            Error::Invalid { object, reason } => Error::Invalid {
                object,
                reason: format!("{reason} ({note})"),
            },
        }
    }

    pub(crate) fn os(
        object: impl Into<String>,
        step: impl Into<String>,
        source: io::Error,
    ) -> Self {
        Error::Os {
            object: object.into(),
            step: step.into(),
            source,
        }
    }

    pub(crate) fn sys(
        object: impl Into<String>,
        step: impl Into<String>,
        errno: nix::Error,
    ) -> Self {
        Self::os(object, step, io::Error::from_raw_os_error(errno as i32))
    }

    pub(crate) fn invalid(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            object: object.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn netlink(
        object: impl Into<String>,
        step: impl Into<String>,
        err: rtnetlink::Error,
    ) -> Self {
        let object = object.into();
        let step = step.into();
        match err {
            rtnetlink::Error::NetlinkError(msg) if msg.code.is_some() => Error::Os {
                object,
                step,
                source: msg.to_io(),
            },
            rtnetlink::Error::RequestFailed => Error::Protocol {
                object,
                step,
                detail: "netlink connection closed".into(),
            },
            other => Error::Protocol {
                object,
                step,
                detail: other.to_string(),
            },
        }
    }
}
