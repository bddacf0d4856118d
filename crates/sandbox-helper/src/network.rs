//! The container's network as one unit: loopback, moved devices, realised interfaces,
//! set up in order and undone as a whole. Built on the strategies in `interfaces` and
//! the device moves in `netdev`.

use container_netlink::{NetNs, Netlink};
use container_protocol::network::Allocation;
use container_protocol::sandbox::{InterfaceReport, NetDeviceRecord, NetDeviceSpec};

use crate::{interfaces, netdev};

/// What `Setup` built in the network namespace, and the connections to undo it.
pub struct Network {
    pub host: Netlink,
    pub inside: Netlink,
    pub interfaces: Vec<InterfaceReport>,
    pub devices: Vec<NetDeviceRecord>,
}

impl Network {
    /// Loopback up, each allocation realised in order (only the first gets the default
    /// route), then devices moved in. On failure, whatever was done is undone and the
    /// error names the step.
    pub async fn build(
        ns: &NetNs,
        allocations: &[Allocation],
        devices: &[NetDeviceSpec],
    ) -> Result<Network, String> {
        let host = Netlink::connect().map_err(|e| format!("connect to host netlink: {e}"))?;
        let inside =
            Netlink::connect_in(ns).map_err(|e| format!("connect to container netlink: {e}"))?;
        interfaces::loopback_up(&inside)
            .await
            .map_err(|e| format!("bring loopback up: {e}"))?;
        let names: Vec<String> = allocations.iter().map(|a| a.ifname.clone()).collect();
        netdev::check(&host, devices, &names)
            .await
            .map_err(|e| format!("check net devices: {e}"))?;
        let mut net = Network {
            host,
            inside,
            interfaces: Vec::new(),
            devices: Vec::new(),
        };
        // Interfaces before devices: a device named with `%d` must not take a name
        // (eth0) that an attachment was promised.
        for (i, alloc) in allocations.iter().enumerate() {
            match interfaces::realize(&net.host, ns, &net.inside, alloc, i == 0).await {
                Ok(report) => net.interfaces.push(report),
                Err(e) => return Err(net.undo(format!("interface {}: {e}", alloc.ifname)).await),
            }
            container_protocol::fault::point("sandbox-helper:after-interface");
        }
        match netdev::move_in(&net.host, ns, &net.inside, devices).await {
            Ok(moved) => net.devices = moved,
            Err(e) => return Err(net.undo(format!("move net devices in: {e}")).await),
        }
        Ok(net)
    }

    /// One more interface, realised as `build` realises each (`network connect`); a
    /// failure undoes its own part (the strategy's) and leaves the rest as it was.
    pub async fn attach(
        &mut self,
        ns: &NetNs,
        alloc: &Allocation,
        default_route: bool,
    ) -> Result<InterfaceReport, String> {
        if let Some(i) = self
            .interfaces
            .iter()
            .find(|i| i.ifname == alloc.ifname || i.network == alloc.network)
        {
            return Err(format!(
                "interface {}: the sandbox already has {} on network {}",
                alloc.ifname, i.ifname, i.network
            ));
        }
        let report = interfaces::realize(&self.host, ns, &self.inside, alloc, default_route)
            .await
            .map_err(|e| format!("interface {}: {e}", alloc.ifname))?;
        self.interfaces.push(report.clone());
        container_protocol::fault::point("sandbox-helper:after-interface");
        Ok(report)
    }

    /// Removes the interface of `network` named `ifname`, if the sandbox has it
    /// (`network disconnect`): what the strategy made goes, and the rest stays.
    pub async fn detach(&mut self, network: &str, ifname: &str) -> Result<(), String> {
        let Some(at) = self
            .interfaces
            .iter()
            .position(|i| i.network == network && i.ifname == ifname)
        else {
            return Ok(());
        };
        interfaces::detach(&self.host, &self.inside, &self.interfaces[at])
            .await
            .map_err(|e| format!("remove interface {ifname}: {e}"))?;
        self.interfaces.remove(at);
        Ok(())
    }

    /// Tears down what was built so far and returns `msg` with any failure of that.
    async fn undo(&mut self, msg: String) -> String {
        let undo = self.teardown().await;
        if undo.is_empty() {
            msg
        } else {
            format!("{msg} (undoing it failed too: {})", undo.join("; "))
        }
    }

    /// Removes host-side interfaces (last first) and gives devices back. Keeps going
    /// past failures and returns them all.
    pub async fn teardown(&mut self) -> Vec<String> {
        let mut errors = self.remove_interfaces().await;
        errors.extend(self.give_back_devices().await);
        errors
    }

    /// Deletes the host ends of the interfaces, for a namespace that lives on. When the
    /// namespace itself goes, this is not needed: its veth pairs die with it, in the
    /// kernel's background cleanup, instead of costing a synchronous RCU barrier each.
    pub async fn remove_interfaces(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for report in self.interfaces.drain(..).rev() {
            if let Err(e) = interfaces::remove(&self.host, &report).await {
                errors.push(format!("remove interface {}: {e}", report.ifname));
            }
        }
        errors
    }

    /// Hands every moved device back to the host: a virtual one would otherwise die
    /// with the namespace.
    pub async fn give_back_devices(&mut self) -> Vec<String> {
        let devices = std::mem::take(&mut self.devices);
        match netdev::give_back(&self.host, &self.inside, &devices).await {
            Ok(()) => vec![],
            Err(e) => vec![format!("give net devices back: {e}")],
        }
    }
}
