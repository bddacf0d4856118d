//! The network helper: one process per network. It owns the network's plugin resources
//! (bridge, NAT rules, parent link checks, CNI results) and its IPAM, and answers
//! allocate, release, gc and state on the endpoints it vends.
//!
//! The apiserver uses [`plugins::validate`], [`plugins::check_host`] and the plugin's
//! capabilities ([`Plugin::publishes_ports`], [`Plugin::declared_subnets`], …) to refuse
//! bad input before it creates anything.

pub mod dns;
pub mod error;
mod mac;
pub mod plugins;
pub mod service;
mod sysctl;

pub use error::PluginError;
pub use plugins::{check_host, uses_ipam, validate, NetworkPlugin, Plugin};
pub use service::{HelperError, NetworkHelper};
