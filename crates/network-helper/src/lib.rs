//! The network helper: one process per network. It owns the network's plugin resources
//! (bridge, NAT rules, parent link checks) and its IPAM, and answers allocate, release,
//! gc and state on the endpoints it vends.

pub mod service;
