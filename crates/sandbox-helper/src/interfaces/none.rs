//! `none` plugin: the container has loopback and nothing else.

use container_netlink::Netlink;
use container_protocol::network::Allocation;
use container_protocol::sandbox::InterfaceReport;

use super::{loopback_up, InterfaceError};

pub(super) async fn realize(
    inside: &Netlink,
    alloc: &Allocation,
) -> Result<InterfaceReport, InterfaceError> {
    // Loopback is the whole of this network, so make sure of it here too.
    loopback_up(inside).await?;
    Ok(super::report(alloc, None, Vec::new()))
}
