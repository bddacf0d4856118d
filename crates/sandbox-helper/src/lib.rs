//! The sandbox helper: one process per container. It owns the container's namespaces,
//! builds its interfaces through the strategy of each attachment's plugin, runs and
//! supervises the workload, and exits only when the apiserver tells it to.

pub mod service;
