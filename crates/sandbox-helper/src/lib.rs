//! The sandbox helper: one process per container. It owns the container's namespaces,
//! builds its interfaces through the strategy of each attachment's plugin, runs and
//! supervises the workload, and exits only when the apiserver tells it to.
//!
//! * `namespaces`: net/uts/ipc/pid namespaces, made before the runtime starts.
//! * `network`: loopback, `netdev` moves and `interfaces` strategies as one unit.
//! * `etc`: generated /etc/hosts, /etc/hostname, /etc/resolv.conf.
//! * `process`, `rootfs`, `launch`, `pty`: starting a process inside the container.
//! * `service`: the calls.

pub mod etc;
pub mod interfaces;
pub mod launch;
pub mod logs;
pub mod namespaces;
pub mod netdev;
pub mod network;
pub mod process;
pub mod pty;
pub mod rootfs;
pub mod service;
