//! The apiserver as a library: the binary parses arguments and calls [`daemon::run`];
//! tests drive the same code.
//!
//! * `daemon`: start order, signals, drain at shutdown; `dispatch`: requests to parts;
//! * `networks`, `containers`: the two parts, each with a narrow handle to what it uses;
//! * `images`: the image store (`container-image`): pull, load, save, rm, prune;
//! * `check`: `system check [--fix]`;
//! * `ops`: operations in flight (what GC and check must leave alone); `claims`: host
//!   ports, devices and MACs a running container holds; `keyed`: per-object locks;
//! * `server`: the socket and who may use it; `undo`: rollback stacks;
//! * `sandbox_cleanup`: the sandbox helper's `cleanup` mode, after a dead sandbox.

pub mod check;
pub mod claims;
pub mod containers;
pub mod daemon;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod images;
pub mod keyed;
pub mod networks;
pub mod notify;
pub mod ops;
pub mod prune;
pub mod records;
pub mod resources;
pub mod sandbox_cleanup;
pub mod server;
pub mod subnets;
pub mod undo;
pub mod volume_opts;
pub mod volumes;

pub use error::ApiError;
