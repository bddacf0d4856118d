use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo,
    LinkMessage, MacVlanMode as NlMacVlanMode,
};
use rtnetlink::{
    LinkBridge, LinkBridgePort, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVeth,
};

use crate::error::{Error, Result};
use crate::{NetNs, Netlink};

/// What the project needs to know about a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// The rtnetlink kind (`"bridge"`, `"veth"`, `"macvlan"`, ...); `None` for
    /// physical devices and loopback.
    pub kind: Option<String>,
    /// Hardware address, when it is an Ethernet-sized one.
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`), regardless of carrier.
    pub up: bool,
    /// Index of the bridge (or other controller) this link is enslaved to.
    pub master: Option<u32>,
    /// `IFLA_LINK`: the lower device of a macvlan or the peer of a veth. It may be an
    /// index in another namespace (a veth whose peer was moved away).
    pub parent: Option<u32>,
    /// `IFLA_IFALIAS`: on links the runtime made, who owns them (see [`crate::owner`]).
    pub alias: Option<String>,
}

/// Macvlan modes, as `ip link add ... type macvlan mode MODE` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MacvlanMode {
    Bridge,
    Private,
    Vepa,
    /// The only macvlan on its parent, taking over the parent's MAC.
    Passthru,
}

impl From<MacvlanMode> for NlMacVlanMode {
    fn from(mode: MacvlanMode) -> Self {
        match mode {
            MacvlanMode::Bridge => NlMacVlanMode::Bridge,
            MacvlanMode::Private => NlMacVlanMode::Private,
            MacvlanMode::Vepa => NlMacVlanMode::Vepa,
            MacvlanMode::Passthru => NlMacVlanMode::Passthrough,
        }
    }
}

/// Checks an interface name the way the kernel's `dev_valid_name` does, so a bad name
/// from a config is refused with a message rather than an `EINVAL` mid-setup.
pub fn valid_ifname(name: &str) -> Result<()> {
    let invalid = |reason: &str| Err(Error::invalid(format!("interface name {name:?}"), reason));
    if name.is_empty() {
        return invalid("empty");
    }
    // IFNAMSIZ is 16 including the terminating NUL.
    if name.len() > 15 {
        return invalid("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return invalid("reserved name");
    }
    for b in name.bytes() {
        if b == b'/' || b == b':' {
            return invalid("contains '/' or ':'");
        }
        // The kernel's isspace() also counts 0xA0, which appears inside UTF-8 sequences.
        if b.is_ascii_whitespace() || b == 0x0b || b == 0xa0 {
            return invalid("contains whitespace");
        }
        if b == 0 {
            return invalid("contains NUL");
        }
    }
    Ok(())
}

pub(crate) fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_link(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        mac: None,
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
        parent: None,
        alias: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfAlias(alias) if !alias.is_empty() => info.alias = Some(alias.clone()),
            LinkAttribute::IfName(name) => info.name = name.clone(),
            LinkAttribute::Address(addr) => info.mac = <[u8; 6]>::try_from(addr.as_slice()).ok(),
            LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
            LinkAttribute::Controller(master) if *master != 0 => info.master = Some(*master),
            LinkAttribute::Link(link) if *link != 0 && *link != info.index => {
                info.parent = Some(*link)
            }
            LinkAttribute::LinkInfo(infos) => {
                for item in infos {
                    if let NlLinkInfo::Kind(kind) = item {
                        info.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    info
}

fn is_enodev(err: &rtnetlink::Error) -> bool {
    matches!(err, rtnetlink::Error::NetlinkError(msg) if msg.raw_code().abs() == libc::ENODEV)
}

impl Netlink {
    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>> {
        valid_ifname(name)?;
        let mut replies = self.handle.link().get().match_name(name).execute();
        match replies.try_next().await {
            Ok(msg) => Ok(msg.as_ref().map(parse_link)),
            Err(e) if is_enodev(&e) => Ok(None),
            Err(e) => Err(Error::netlink(format!("link {name}"), "look up", e)),
        }
    }

    pub async fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>> {
        let mut replies = self.handle.link().get().match_index(index).execute();
        match replies.try_next().await {
            Ok(msg) => Ok(msg.as_ref().map(parse_link)),
            Err(e) if is_enodev(&e) => Ok(None),
            Err(e) => Err(Error::netlink(format!("link index {index}"), "look up", e)),
        }
    }

    pub async fn links(&self) -> Result<Vec<LinkInfo>> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink(format!("links in {}", self.label), "list", e))?;
        Ok(msgs.iter().map(parse_link).collect())
    }

    /// Creates a bridge, left down. Returns its index.
    pub async fn create_bridge(&self, name: &str, mtu: Option<u32>) -> Result<u32> {
        self.create_owned_bridge(name, mtu, None).await
    }

    /// [`create_bridge`](Self::create_bridge), marked with its owner (see
    /// [`crate::owner`]) right after: the kernel drops `IFLA_IFALIAS` from a create
    /// request. A mark that cannot be set undoes the create.
    pub async fn create_owned_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        owner: Option<&str>,
    ) -> Result<u32> {
        valid_ifname(name)?;
        // LinkBridge::new would also set the bridge up; every create here leaves the
        // link down so the caller configures it before traffic can flow.
        let mut req = LinkMessageBuilder::<LinkBridge>::new(name);
        if let Some(mtu) = mtu {
            req = req.mtu(mtu);
        }
        self.handle
            .link()
            .add(req.build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("link {name}"), "create bridge", e))?;
        let index = self.created_index(name).await?;
        self.mark_created(index, name, owner).await?;
        Ok(index)
    }

    /// Sets the owner mark of a link just created, deleting the link if it cannot.
    async fn mark_created(&self, index: u32, name: &str, owner: Option<&str>) -> Result<()> {
        let Some(owner) = owner else { return Ok(()) };
        let Err(e) = self.set_alias(index, owner).await else {
            return Ok(());
        };
        match self.delete_link_by_name(name).await {
            Ok(_) => Err(e),
            // Both said: the caller must know an unmarked link was left.
            Err(undo) => Err(Error::Protocol {
                object: format!("link {name}"),
                step: "mark with its owner".into(),
                detail: format!("{e}; and deleting it again failed: {undo}"),
            }),
        }
    }

    /// Creates a veth pair in ONE request, the peer born directly inside `peer_netns`
    /// (so it never shows up, even briefly, in this namespace and its name cannot
    /// collide here). `mtu` applies to both ends, `peer_mac` to the peer. Both ends are
    /// left down. Returns the index of the end in this connection's namespace.
    pub async fn create_veth(
        &self,
        host_name: &str,
        peer_name: &str,
        peer_netns: &NetNs,
        mtu: Option<u32>,
        peer_mac: Option<[u8; 6]>,
    ) -> Result<u32> {
        self.create_owned_veth(host_name, peer_name, peer_netns, mtu, peer_mac, None)
            .await
    }

    /// [`create_veth`](Self::create_veth), with the host end marked with its owner
    /// (see [`crate::owner`]) right after, as in
    /// [`create_owned_bridge`](Self::create_owned_bridge).
    pub async fn create_owned_veth(
        &self,
        host_name: &str,
        peer_name: &str,
        peer_netns: &NetNs,
        mtu: Option<u32>,
        peer_mac: Option<[u8; 6]>,
        owner: Option<&str>,
    ) -> Result<u32> {
        valid_ifname(host_name)?;
        valid_ifname(peer_name)?;
        let mut peer = LinkUnspec::new_with_name(peer_name).setns_by_fd(peer_netns.as_raw_fd());
        let mut host = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host_name.to_string());
        if let Some(mtu) = mtu {
            peer = peer.mtu(mtu);
            host = host.mtu(mtu);
        }
        if let Some(mac) = peer_mac {
            peer = peer.address(mac.to_vec());
        }
        let msg = host
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        self.handle.link().add(msg).execute().await.map_err(|e| {
            Error::netlink(
                format!("link {host_name}"),
                format!(
                    "create veth with peer {peer_name} in {}",
                    peer_netns.label()
                ),
                e,
            )
        })?;
        let index = self.created_index(host_name).await?;
        self.mark_created(index, host_name, owner).await?;
        Ok(index)
    }

    /// Creates a macvlan on `parent_index` (a link in this connection's namespace),
    /// directly inside `netns` when given, left down.
    pub async fn create_macvlan(
        &self,
        name: &str,
        parent_index: u32,
        mode: MacvlanMode,
        netns: Option<&NetNs>,
        mac: Option<[u8; 6]>,
        mtu: Option<u32>,
    ) -> Result<()> {
        valid_ifname(name)?;
        let mut req = LinkMacVlan::new(name, parent_index, mode.into());
        if let Some(ns) = netns {
            req = req.setns_by_fd(ns.as_raw_fd());
        }
        if let Some(mac) = mac {
            req = req.address(mac.to_vec());
        }
        if let Some(mtu) = mtu {
            req = req.mtu(mtu);
        }
        let step = match netns {
            Some(ns) => format!(
                "create macvlan ({mode:?}) on parent index {parent_index} in {}",
                ns.label()
            ),
            None => format!("create macvlan ({mode:?}) on parent index {parent_index}"),
        };
        self.handle
            .link()
            .add(req.build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("link {name}"), step, e))
    }

    pub async fn set_up(&self, index: u32) -> Result<()> {
        self.set_link(
            index,
            LinkUnspec::new_with_index(index).up(),
            "set up".into(),
        )
        .await
    }

    pub async fn set_down(&self, index: u32) -> Result<()> {
        self.set_link(
            index,
            LinkUnspec::new_with_index(index).down(),
            "set down".into(),
        )
        .await
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        let req = LinkUnspec::new_with_index(index).mtu(mtu);
        self.set_link(index, req, format!("set mtu {mtu}")).await
    }

    pub async fn set_mac(&self, index: u32, mac: [u8; 6]) -> Result<()> {
        let req = LinkUnspec::new_with_index(index).address(mac.to_vec());
        self.set_link(index, req, format!("set mac {}", fmt_mac(&mac)))
            .await
    }

    /// Enslaves the link to a bridge.
    pub async fn set_master(&self, index: u32, bridge_index: u32) -> Result<()> {
        let req = LinkUnspec::new_with_index(index).controller(bridge_index);
        let step = format!("attach to {}", self.link_label(bridge_index).await);
        self.set_link(index, req, step).await
    }

    /// Sets `IFLA_IFALIAS`. The kernel takes it on an existing link only: in a create
    /// request it is dropped.
    pub async fn set_alias(&self, index: u32, alias: &str) -> Result<()> {
        let req = LinkUnspec::new_with_index(index).alias(alias);
        self.set_link(index, req, format!("set alias {alias:?}"))
            .await
    }

    /// Sets or clears `IFF_PROMISC` (the CNI bridge plugin's `promiscMode`).
    pub async fn set_promisc(&self, index: u32, on: bool) -> Result<()> {
        let req = LinkUnspec::new_with_index(index).promiscuous(on);
        self.set_link(index, req, format!("set promisc {on}")).await
    }

    /// Sets a bridge port's hairpin mode (`IFLA_BRPORT_MODE`): frames may go back out
    /// the port they came in on, so a pod reaches itself through a service address.
    pub async fn set_hairpin(&self, port_index: u32, on: bool) -> Result<()> {
        let msg = LinkBridgePort::new(port_index)
            .append_info_data(InfoBridgePort::HairpinMode(on))
            .build();
        if let Err(e) = self.handle.link().set_port(msg).execute().await {
            let object = self.link_label(port_index).await;
            return Err(Error::netlink(object, format!("set hairpin {on}"), e));
        }
        Ok(())
    }

    /// Releases the link from its bridge.
    pub async fn set_nomaster(&self, index: u32) -> Result<()> {
        let req = LinkUnspec::new_with_index(index).nocontroller();
        self.set_link(index, req, "detach from master".into()).await
    }

    /// Renames a link. Kernels before 6.x refuse (`EBUSY`) while it is up.
    pub async fn rename(&self, index: u32, new_name: &str) -> Result<()> {
        valid_ifname(new_name)?;
        let req = LinkUnspec::new_with_index(index).name(new_name.to_string());
        self.set_link(index, req, format!("rename to {new_name}"))
            .await
    }

    /// Moves a link into `ns`, renaming it on the way when `new_name` is given, in one
    /// request (`IFLA_NET_NS_FD` with `IFLA_IFNAME`): the old name never has to be free
    /// in `ns` and the new one never has to be free here. The kernel keeps MAC and MTU,
    /// brings the link down and drops its addresses and routes.
    ///
    /// The kernel moves first and renames inside `ns` second, so when `new_name` is
    /// taken there it has already moved the link when it fails. This method then moves
    /// it back, so a failure leaves the link where and as it was.
    pub async fn move_to_netns(
        &self,
        index: u32,
        ns: &NetNs,
        new_name: Option<&str>,
    ) -> Result<()> {
        if let Some(name) = new_name {
            valid_ifname(name)?;
        }
        let before = self.link_by_index(index).await?;
        let label = match &before {
            Some(link) => format!("link {} (index {index})", link.name),
            None => format!("link index {index}"),
        };
        let mut step = format!("move to {}", ns.label());
        if let Some(name) = new_name {
            step = format!("{step} as {name}");
        }
        let Err(e) = self.request_move(index, ns, new_name).await else {
            return Ok(());
        };
        let err = Error::netlink(label, step, e);
        let Some(before) = before else {
            return Err(err);
        };
        match self.link_by_index(index).await {
            Ok(Some(link)) if link.name == before.name => Err(err),
            _ => match self.move_back(&before.name, ns).await {
                Ok(()) => Err(err),
                Err(undo) => Err(err.with_note(format!(
                    "link left in {} as {}: moving it back failed: {undo}",
                    ns.label(),
                    before.name
                ))),
            },
        }
    }

    async fn request_move(
        &self,
        index: u32,
        ns: &NetNs,
        new_name: Option<&str>,
    ) -> std::result::Result<(), rtnetlink::Error> {
        let mut req = LinkUnspec::new_with_index(index).setns_by_fd(ns.as_raw_fd());
        if let Some(name) = new_name {
            req = req.name(name.to_string());
        }
        self.handle.link().set(req.build()).execute().await
    }

    async fn move_back(&self, name: &str, ns: &NetNs) -> Result<()> {
        let there = Netlink::connect_in(ns)?;
        let Some(link) = there.link_by_name(name).await? else {
            return Ok(());
        };
        there
            .request_move(link.index, &self.netns, None)
            .await
            .map_err(|e| {
                Error::netlink(
                    format!("link {name} in {}", ns.label()),
                    format!("move back to {}", self.label),
                    e,
                )
            })
    }

    pub async fn delete_link(&self, index: u32) -> Result<()> {
        if let Err(e) = self.handle.link().del(index).execute().await {
            return Err(Error::netlink(self.link_label(index).await, "delete", e));
        }
        Ok(())
    }

    /// Deletes a link by name. Returns whether it existed, so cleanup can run twice.
    pub async fn delete_link_by_name(&self, name: &str) -> Result<bool> {
        valid_ifname(name)?;
        // By name in the request itself: looking the index up first would race with
        // another deleter.
        let msg = LinkUnspec::new_with_name(name).build();
        match self.handle.link().del_with_message(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_enodev(&e) => Ok(false),
            Err(e) => Err(Error::netlink(format!("link {name}"), "delete", e)),
        }
    }

    async fn set_link(
        &self,
        index: u32,
        req: LinkMessageBuilder<LinkUnspec>,
        step: String,
    ) -> Result<()> {
        if let Err(e) = self.handle.link().set(req.build()).execute().await {
            return Err(Error::netlink(self.link_label(index).await, step, e));
        }
        Ok(())
    }

    async fn created_index(&self, name: &str) -> Result<u32> {
        match self.link_by_name(name).await? {
            Some(link) => Ok(link.index),
            None => Err(Error::Protocol {
                object: format!("link {name}"),
                step: "look up after create".into(),
                detail: "link vanished right after it was created".into(),
            }),
        }
    }

    /// Names a link in an error message, by name when it can still be found.
    pub(crate) async fn link_label(&self, index: u32) -> String {
        match self.link_by_index(index).await {
            Ok(Some(link)) => format!("link {} (index {index})", link.name),
            _ => format!("link index {index}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_ifname;

    #[test]
    fn ifname_rules_match_the_kernel() {
        for ok in [
            "eth0",
            "a",
            "cbr-n1",
            "123456789012345",
            "veth.1",
            "x_y",
            "é",
        ] {
            assert!(valid_ifname(ok).is_ok(), "{ok:?} should be valid");
        }
        for bad in [
            "",
            "1234567890123456",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\nb",
            "a\0b",
            "\u{e0}", // UTF-8 C3 A0: the kernel sees 0xA0 as a space
        ] {
            assert!(valid_ifname(bad).is_err(), "{bad:?} should be invalid");
        }
        let msg = valid_ifname("a/b").unwrap_err().to_string();
        assert!(msg.contains("\"a/b\""), "{msg}");
    }
}
