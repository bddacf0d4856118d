//! The sandbox helper: one process per container. It owns the container's namespaces,
//! builds its interfaces through the strategy of each attachment's plugin, runs and
//! supervises the workload, and exits only when the apiserver tells it to.
//!
//! * `namespaces`: net/uts/ipc/pid namespaces, made before the runtime starts.
//! * `network`: loopback, `netdev` moves and `interfaces` strategies as one unit.
//! * `etc`: generated /etc/hosts, /etc/hostname, /etc/resolv.conf.
//! * `plan`: what a process does between fork and exec, workload and exec alike;
//!   `process` carries it out; `rootfs` is its filesystem part; `launch`, `pty`: its
//!   environment and stdio.
//! * `caps`, `masks`, `seccomp`: the confinement steps of the plan (issue 10).
//! * `users`: `-u USER[:GROUP]` resolved in the container's own user database.
//! * `resources`: the cgroup, rlimits and devices; `userns`: `--userns=auto` (issue 10);
//!   `idmap`: the idmapped mounts it needs (root, binds, volumes, an image's overlay).
//! * `service`: the calls.
//! * `cleanup`: the `cleanup` mode, for a sandbox that died without tearing down.

pub mod caps;
pub mod cleanup;
pub mod etc;
pub mod idmap;
pub mod interfaces;
pub mod launch;
pub mod logs;
pub mod masks;
pub mod mounts;
pub mod namespaces;
pub mod netdev;
pub mod network;
pub mod overlay;
pub mod plan;
pub mod process;
pub mod pty;
pub mod resources;
pub mod rootfs;
pub mod seccomp;
pub mod service;
pub mod userns;
pub mod users;
