//! The project's only way to talk to the kernel's routing netlink: links, addresses,
//! routes, and network namespaces. The product never runs `ip`.
//!
//! A [`Netlink`] is one long-lived rtnetlink socket bound to the namespace it was
//! created in; requests on it act there, whatever thread or namespace awaits them.

mod address;
mod error;
mod ipv6;
mod link;
mod names;
pub mod netns;
pub mod owner;
mod route;

pub use address::{AddrScope, AddressInfo};
pub use error::{Error, Result};
pub use ipv6::disable_ipv6;
pub use link::{valid_ifname, LinkInfo, MacvlanMode};
pub use names::name_hash;
pub use netns::{with_netns, NetNs};
pub use owner::Owner;
pub use route::{IpFamily, RouteInfo};

/// One rtnetlink connection. Cheap to clone; the connection task ends when the last
/// clone is dropped.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
    /// Kept to move links back here, whatever thread later uses the connection.
    netns: std::sync::Arc<NetNs>,
    label: String,
}

impl Netlink {
    /// Connects in the calling thread's namespace. Must run inside a tokio runtime
    /// with IO enabled, which drives the connection.
    pub fn connect() -> Result<Netlink> {
        let label = "netns of current thread";
        let rt = runtime(label)?;
        let netns = std::sync::Arc::new(NetNs::current()?);
        let (connection, handle, _unsolicited) = rtnetlink::new_connection()
            .map_err(|e| Error::os(label, "open rtnetlink socket", e))?;
        rt.spawn(connection);
        Ok(Netlink {
            handle,
            netns,
            label: label.into(),
        })
    }

    /// Connects inside `ns`: the socket is created there, so every request on this
    /// connection acts in `ns` while the caller stays where it is.
    pub fn connect_in(ns: &NetNs) -> Result<Netlink> {
        // Checked before entering the namespace: registering the socket needs the
        // runtime, and failing there would leave nothing to report with.
        let rt = runtime(ns.label())?;
        let netns = std::sync::Arc::new(ns.try_clone()?);
        let (connection, handle, _unsolicited) = with_netns(ns, rtnetlink::new_connection)?
            .map_err(|e| Error::os(ns.label(), "open rtnetlink socket", e))?;
        rt.spawn(connection);
        Ok(Netlink {
            handle,
            netns,
            label: ns.label().into(),
        })
    }

    /// The namespace this connection acts in, as errors name it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The namespace this connection acts in.
    pub fn netns(&self) -> &NetNs {
        &self.netns
    }
}

fn runtime(label: &str) -> Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current()
        .map_err(|e| Error::invalid(label, format!("netlink connection: {e}")))
}
