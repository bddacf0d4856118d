//! The apiserver as a library: the binary parses arguments and calls [`daemon::run`];
//! tests drive the same code.

pub mod daemon;
pub mod error;
pub mod helpers;
pub mod notify;
pub mod server;

pub use error::ApiError;
