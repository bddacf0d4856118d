//! Interface strategies: how an allocation becomes a Linux interface in the container.
//!
//! Seed 001: the strategy is chosen by the allocation's [`PluginData`], never by a
//! process-wide setting, so one container can join networks of different plugins. Each
//! strategy is one module; adding a plugin adds a module and an arm in [`realize`],
//! whose match on the data is exhaustive.
//!
//! Every strategy that creates something remembers how to undo it: a failure half way
//! removes what was made before the error is returned.

mod bridge;
mod cni;
mod macvlan;
mod none;

use std::net::IpAddr;

use container_netlink::{NetNs, Netlink};
use container_protocol::network::{Allocation, PluginData};
use container_protocol::sandbox::InterfaceReport;

pub use bridge::{is_veth_host_name, veth_host_name};

#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// A kernel request failed: `network n1: eth0: add address 10.88.0.2/24: File exists`.
    #[error("network {network}: {ifname}: {step}: {}", brief(.source))]
    Step {
        network: String,
        ifname: String,
        step: String,
        #[source]
        source: container_netlink::Error,
    },
    /// The allocation cannot be realised as given; nothing was changed.
    #[error("network {network}: {ifname}: {reason}")]
    Invalid {
        network: String,
        ifname: String,
        reason: String,
    },
    #[error("loopback: {step}: {}", brief(.source))]
    Loopback {
        step: String,
        #[source]
        source: container_netlink::Error,
    },
    /// A step failed and undoing the earlier ones failed too: something may be left.
    #[error("{0}")]
    Several(Box<container_protocol::Failures<InterfaceError>>),
}

/// The cause of a netlink error without its object, which the caller's message already
/// names: `File exists` rather than `address 10.88.0.2/24 on link eth0 (index 4): add:
/// File exists (os error 17)`.
pub(crate) fn brief(err: &container_netlink::Error) -> String {
    match err.errno() {
        Some(errno) => nix::errno::Errno::from_raw(errno).desc().to_string(),
        None => err.to_string(),
    }
}

/// Names the attachment in every error a strategy returns.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub network: &'a str,
    pub ifname: &'a str,
}

impl<'a> Ctx<'a> {
    fn of(alloc: &'a Allocation) -> Self {
        Ctx {
            network: &alloc.network,
            ifname: &alloc.ifname,
        }
    }

    /// For `map_err`: wraps a netlink error with the step that failed.
    pub fn step(
        self,
        step: impl Into<String>,
    ) -> impl FnOnce(container_netlink::Error) -> InterfaceError + 'a {
        let step = step.into();
        move |source| InterfaceError::Step {
            network: self.network.into(),
            ifname: self.ifname.into(),
            step,
            source,
        }
    }

    pub fn invalid(self, reason: impl Into<String>) -> InterfaceError {
        InterfaceError::Invalid {
            network: self.network.into(),
            ifname: self.ifname.into(),
            reason: reason.into(),
        }
    }
}

/// Combines a failure with the result of undoing what came before it.
pub(crate) fn undone(error: InterfaceError, undo: Result<(), InterfaceError>) -> InterfaceError {
    match undo {
        Ok(()) => error,
        Err(undo) => {
            tracing::warn!(%error, %undo, "interface rollback failed");
            InterfaceError::Several(Box::new(container_protocol::Failures::with_undo(
                error,
                vec![undo],
            )))
        }
    }
}

/// Brings loopback up in the container: every container has it, whatever its networks.
pub async fn loopback_up(inside: &Netlink) -> Result<(), InterfaceError> {
    let step = |step: &str| {
        let step = step.to_string();
        move |source| InterfaceError::Loopback { step, source }
    };
    let lo = inside
        .link_by_name("lo")
        .await
        .map_err(step("look up"))?
        .ok_or_else(|| InterfaceError::Loopback {
            step: "look up".into(),
            source: container_netlink::Error::Invalid {
                object: format!("link lo in {}", inside.label()),
                reason: "not found".into(),
            },
        })?;
    if !lo.up {
        inside.set_up(lo.index).await.map_err(step("set up"))?;
    }
    Ok(())
}

/// Realises one allocation as an interface in the container's namespace `ns`, through
/// the strategy of the allocation's plugin data. `host` acts in the host namespace, `inside`
/// in `ns`. Only the first attachment of a container passes `default_route`, so a later
/// network never replaces the route the first one set; non-default routes are always
/// added.
pub async fn realize(
    host: &Netlink,
    ns: &NetNs,
    inside: &Netlink,
    alloc: &Allocation,
    default_route: bool,
) -> Result<InterfaceReport, InterfaceError> {
    let cx = Ctx::of(alloc);
    if alloc.data != PluginData::None {
        container_netlink::valid_ifname(&alloc.ifname)
            .map_err(|e| cx.invalid(format!("invalid interface name: {e}")))?;
    }
    match &alloc.data {
        PluginData::Bridge { bridge } => {
            bridge::realize(cx, host, ns, inside, alloc, bridge, default_route).await
        }
        PluginData::Macvlan { parent, mode } => {
            macvlan::realize(cx, host, ns, inside, alloc, parent, *mode, default_route).await
        }
        PluginData::None => none::realize(inside, alloc).await,
        PluginData::Cni { .. } => cni::realize(cx, inside, alloc).await,
    }
}

/// Removes what an interface left in the host namespace (a veth's host end). The
/// container side goes with the namespace. Idempotent: an absent link is fine, so
/// cleanup can run again after a partial failure.
pub async fn remove(host: &Netlink, report: &InterfaceReport) -> Result<(), InterfaceError> {
    let Some(name) = &report.host_ifname else {
        return Ok(());
    };
    let cx = Ctx {
        network: &report.network,
        ifname: &report.ifname,
    };
    host.delete_link_by_name(name)
        .await
        .map_err(cx.step(format!("delete host link {name}")))?;
    Ok(())
}

/// Takes an interface out of a namespace that lives on (`network disconnect`): a veth
/// goes with its host end, a macvlan is deleted inside; a CNI chain's interface is its
/// plugins' to remove (the network helper's DEL), loopback stays. Idempotent.
pub async fn detach(
    host: &Netlink,
    inside: &Netlink,
    report: &InterfaceReport,
) -> Result<(), InterfaceError> {
    use container_protocol::network::PluginKind;
    let cx = Ctx {
        network: &report.network,
        ifname: &report.ifname,
    };
    if report.host_ifname.is_some() {
        return remove(host, report).await;
    }
    if report.plugin == PluginKind::Macvlan {
        inside
            .delete_link_by_name(&report.ifname)
            .await
            .map(|_| ())
            .map_err(cx.step(format!("delete {}", report.ifname)))?;
    }
    Ok(())
}

/// What bridge and macvlan share once the link exists inside: addresses (from IPAM, so
/// IPv6 ones without DAD and usable at once), up, routes.
/// Addresses go on before the link is up so nothing talks from an unaddressed link;
/// routes come after, since the kernel needs the link's connected routes to accept a
/// gateway.
pub(crate) async fn configure_inside(
    cx: Ctx<'_>,
    inside: &Netlink,
    index: u32,
    alloc: &Allocation,
    default_route: bool,
) -> Result<(), InterfaceError> {
    for net in &alloc.addresses {
        inside
            .add_address_nodad(index, *net)
            .await
            .map_err(cx.step(format!("add address {net}")))?;
    }
    // Before it comes up, so it never solicits on a network that has no IPv6.
    if !alloc.addresses.iter().any(|net| net.addr().is_ipv6()) {
        container_netlink::disable_ipv6(inside.netns(), &alloc.ifname)
            .map_err(cx.step("turn IPv6 off (the network gives no IPv6 address)"))?;
    }
    inside.set_up(index).await.map_err(cx.step("set up"))?;

    let mut default_v4 = false;
    let mut default_v6 = false;
    for route in &alloc.routes {
        let dest = route.dest.trunc();
        if dest.prefix_len() == 0 {
            if !default_route {
                continue;
            }
            match dest.addr() {
                IpAddr::V4(_) => default_v4 = true,
                IpAddr::V6(_) => default_v6 = true,
            }
        }
        let step = match route.gateway {
            Some(gw) => format!("add route {dest} via {gw}"),
            None => format!("add route {dest}"),
        };
        inside
            .add_route(dest, route.gateway, Some(index))
            .await
            .map_err(cx.step(step))?;
    }
    // Networks that give only gateways still get their default route, one per family.
    if default_route {
        for gw in &alloc.gateways {
            let done = match gw {
                IpAddr::V4(_) => &mut default_v4,
                IpAddr::V6(_) => &mut default_v6,
            };
            if *done {
                continue;
            }
            inside
                .add_default_route(*gw, Some(index))
                .await
                .map_err(cx.step(format!("add default route via {gw}")))?;
            *done = true;
        }
    }
    Ok(())
}

/// Looks a link up inside by the allocation's interface name.
pub(crate) async fn inside_link(
    cx: Ctx<'_>,
    inside: &Netlink,
    name: &str,
) -> Result<container_netlink::LinkInfo, InterfaceError> {
    inside
        .link_by_name(name)
        .await
        .map_err(cx.step("look up in the container"))?
        .ok_or_else(|| cx.invalid(format!("no link {name} in the container namespace")))
}

/// What an interface realised inside the container is reported as.
pub(crate) fn report(
    alloc: &Allocation,
    mac: Option<[u8; 6]>,
    addresses: Vec<ipnet::IpNet>,
) -> InterfaceReport {
    InterfaceReport {
        network: alloc.network.clone(),
        plugin: alloc.plugin(),
        ifname: alloc.ifname.clone(),
        host_ifname: None,
        mac,
        addresses,
    }
}

/// The last steps of every strategy that builds its interface: address it, bring it
/// up, route it, and report it.
pub(crate) async fn configure_and_report(
    cx: Ctx<'_>,
    inside: &Netlink,
    alloc: &Allocation,
    default_route: bool,
) -> Result<InterfaceReport, InterfaceError> {
    let link = inside_link(cx, inside, &alloc.ifname).await?;
    configure_inside(cx, inside, link.index, alloc, default_route).await?;
    Ok(report(alloc, link.mac, alloc.addresses.clone()))
}
