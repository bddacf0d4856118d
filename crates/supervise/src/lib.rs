//! How the apiserver supervises its helpers (seed 002).
//!
//! * `spawn`: starting a helper in its own session with an inherited bootstrap socket.
//! * `launch`: the helper's process itself, by `posix_spawn`, with no code between clone and exec.
//! * `pidfd`: knowing a helper's process for sure, to tell slow from dead and to kill it.
//! * `table`: the live helpers of one kind, each watched until its process is gone.
//! * `clients`: one typed method per call of each helper's service, each with a deadline.
//!
//! Nothing here ever starts a helper as a side effect: starting is an explicit call.

pub mod clients;
mod launch;
pub mod pidfd;
pub mod spawn;
pub mod table;

pub use clients::{Deadlines, NetworkProto, SandboxProto};
pub use pidfd::Pidfd;
pub use spawn::{default_helper_dir, Spawner};
pub use table::{Helper, HelperGone, HelperProto, HelperTable, Stuck};
