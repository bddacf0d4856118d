//! The apiserver as a library: the binary parses arguments and calls [`daemon::run`];
//! tests drive the same code.

pub mod check;
pub mod containers;
pub mod daemon;
pub mod error;
pub mod helpers;
pub mod networks;
pub mod notify;
pub mod server;
pub mod subnets;
pub mod undo;

pub use error::ApiError;
