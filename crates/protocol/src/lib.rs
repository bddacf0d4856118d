//! The wire protocol shared by every process of `container`.
//!
//! * `frame`: length-delimited frames with bincode-2 bodies, size-limited, versioned.
//! * `transport`: a Unix stream that carries file descriptors with frames.
//! * `rpc`: correlated calls (many in flight on one endpoint) and the server loop.
//! * `bootstrap`: endpoint vending — the only request a helper's bootstrap socket answers.
//! * `api`, `network`, `sandbox`, `helper`: the messages of each service.
//! * `container`: a container's configuration, as the CLI sends it and the store keeps it.
//! * `security`: its confinement, as configured and as the sandbox applies it.
//! * `resources`: its cgroup limits, devices, rlimits and user namespace (issue 10).
//! * `volume`: its mounts (`-v`, `--mount`, `--tmpfs`) and named volumes (issue 12).

pub mod api;
pub mod bootstrap;
pub mod container;
mod error;
pub mod fault;
pub mod frame;
pub mod helper;
pub mod helper_server;
pub mod network;
pub mod resources;
pub mod rpc;
pub mod sandbox;
pub mod security;
pub mod transport;
pub mod volume;

pub use error::{ErrorKind, Failures, ProtocolError, RemoteError};
pub use helper::{HelperInfo, HelperKind};
pub use rpc::{Client, Service};
