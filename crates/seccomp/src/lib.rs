//! Seccomp profiles in Docker's JSON format (Podman's is the same): the default one
//! (Docker's own, `profiles/default.json`), any profile a user gives, checked whole, and
//! compiled by libseccomp for this machine and a container's capabilities into a BPF
//! program the sandbox loads as the last step before exec.
//!
//! libseccomp rather than a pure-Rust compiler: a profile's meaning is libseccomp's
//! (system call names resolved per architecture, x86 and x32 entry in one filter beside
//! x86_64, 64-bit argument comparisons), and runc, crun, youki and podman compile with
//! it, so a Docker or Podman profile means here what it means there. Only the apiserver
//! links it; a sandbox gets the compiled program.
//!
//! * `profile`: the format, read and checked;
//! * `compile`: a profile for one machine and capability set, to BPF;
//! * `syscalls`: names, with the calls newer than the linked libseccomp;
//! * `cache`: each (profile, capabilities) compiled once.

pub mod cache;
pub mod compile;
pub mod profile;
pub mod syscalls;

pub use cache::Cache;
pub use compile::{compile, running_kernel, Arch, CompileError, Target};
pub use profile::{parse, Profile, ProfileError};

/// Docker's default profile (see `profiles/README.md`).
pub const DEFAULT_PROFILE: &str = include_str!("../profiles/default.json");
