//! What the kernel and the run directory hold that no record names: host veths and
//! bridges, netns mounts, helper files, IPAM directories, nftables chains.

use std::collections::HashSet;

use container_netlink::LinkInfo;
use container_protocol::api::FindingKind;
use container_protocol::HelperKind;
use container_store::container::{list_containers, Status};
use container_store::network::load_networks;

use super::Check;

impl Check<'_> {
    pub(super) async fn host(&mut self) {
        let (networks, _) = load_networks(self.paths);
        let network_ids: HashSet<String> = networks.iter().map(|n| n.id.clone()).collect();
        let live = self.live_containers();
        let mut live_host_links: HashSet<String> = HashSet::new();
        for id in &live {
            if let Ok((config, state)) = self.containers.load(id) {
                if state.status == Status::Running {
                    live_host_links.extend(
                        state
                            .interfaces
                            .iter()
                            .filter_map(|i| i.host_ifname.clone()),
                    );
                }
                // A start in flight has host ends not yet recorded: their names follow
                // from the container and interface.
                live_host_links.extend(config.networks.iter().filter_map(|n| {
                    n.ifname
                        .as_deref()
                        .map(|i| container_sandbox_helper::interfaces::veth_host_name(id, i))
                }));
            }
        }

        if let Ok(entries) = std::fs::read_dir(self.paths.ipam()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !network_ids.contains(&name) && !self.ops.holds_network(&name) {
                    let fixed = self.fix && std::fs::remove_dir_all(e.path()).is_ok();
                    self.report(
                        FindingKind::IpamDir,
                        &name,
                        "IPAM directory of a network that does not exist",
                        fixed,
                    );
                }
            }
        }

        let bridges: HashSet<String> = networks
            .iter()
            .filter_map(container_network_helper::plugins::bridge_name)
            .collect();
        let leaked = |links: Vec<LinkInfo>| -> Vec<LinkInfo> {
            links
                .into_iter()
                .filter(|link| {
                    let kind = link.kind.as_deref().unwrap_or("");
                    (kind == "veth"
                        && container_sandbox_helper::interfaces::is_veth_host_name(&link.name)
                        && !live_host_links.contains(&link.name))
                        || (kind == "bridge"
                            && container_network_helper::plugins::bridge::is_derived_name(
                                &link.name,
                            )
                            && !bridges.contains(&link.name))
                })
                .collect()
        };
        let netlink = self.networks.host_netlink();
        let mut candidates = netlink.links().await.map(leaked);
        if candidates.as_ref().is_ok_and(|c| !c.is_empty()) {
            // A stopped container's veth pair dies with its namespace in the kernel's
            // background cleanup: only what is still there a moment later has leaked.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            candidates = netlink.links().await.map(leaked);
        }
        match candidates {
            Ok(links) => {
                for link in links {
                    let kind = link.kind.clone().unwrap_or_default();
                    let fixed = self.fix && netlink.delete_link_by_name(&link.name).await.is_ok();
                    self.report(
                        FindingKind::Link,
                        &link.name,
                        format!("{kind} with no live container or network"),
                        fixed,
                    );
                }
            }
            Err(e) => self.report(
                FindingKind::Link,
                "host",
                format!("cannot list links: {e}"),
                false,
            ),
        }

        // A netns mount is the container's while it runs or is being started; a helper
        // alive for it otherwise is an orphan, reported above, whose shutdown takes it.
        if let Ok(entries) = std::fs::read_dir(self.paths.netns_dir()) {
            let sandboxes = self.containers.sandboxes();
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if live.contains(&id)
                    || (!self.fix
                        && (sandboxes.get(&id).is_some() || sandboxes.stuck(&id).is_some()))
                {
                    continue;
                }
                let fixed = self.fix && container_netlink::NetNs::remove_bound(e.path()).is_ok();
                self.report(
                    FindingKind::Netns,
                    e.path().display().to_string(),
                    "network namespace mount with no running container",
                    fixed,
                );
            }
        }

        let containers: HashSet<String> = list_containers(self.paths).into_iter().collect();
        for kind in HelperKind::ALL {
            let Ok(entries) = std::fs::read_dir(self.paths.helper_dir(kind)) else {
                continue;
            };
            for e in entries.flatten() {
                let mut file = e.file_name().to_string_lossy().into_owned();
                // A rotated log, `<id>.log.<n>`, goes with the log.
                if let Some((log, n)) = file.rsplit_once('.') {
                    if log.ends_with(".log") && n.parse::<u32>().is_ok() {
                        file = log.to_string();
                    }
                }
                let Some((id, ext)) = file.rsplit_once('.') else {
                    continue;
                };
                let (alive, owner_exists) = match kind {
                    HelperKind::Network => {
                        let t = self.networks.table();
                        (
                            t.get(id).is_some() || t.stuck(id).is_some(),
                            network_ids.contains(id),
                        )
                    }
                    HelperKind::Sandbox => {
                        let t = self.containers.sandboxes();
                        (
                            t.get(id).is_some() || t.stuck(id).is_some(),
                            containers.contains(id),
                        )
                    }
                };
                let leaked = match ext {
                    "sock" | "pid" => !alive && !self.held(kind, id),
                    "log" => !owner_exists && !alive && !self.held(kind, id),
                    _ => false,
                };
                if leaked {
                    let fixed = self.fix && std::fs::remove_file(e.path()).is_ok();
                    self.report(
                        FindingKind::HelperFile,
                        e.path().display().to_string(),
                        format!("{kind} helper {id} is not alive"),
                        fixed,
                    );
                }
            }
        }

        let firewall = container_firewall::Firewall::new();
        match firewall.list_networks() {
            Ok(ids) => {
                for id in ids
                    .into_iter()
                    .filter(|id| !network_ids.contains(id) && !self.ops.holds_network(id))
                {
                    let fixed = self.fix && firewall.teardown_network(&id).is_ok();
                    self.report(
                        FindingKind::NftChain,
                        &id,
                        "nftables chains of a network that does not exist",
                        fixed,
                    );
                }
            }
            Err(e) => self.report(
                FindingKind::NftChain,
                "table",
                format!("cannot list: {e}"),
                false,
            ),
        }
    }

    fn held(&self, kind: HelperKind, id: &str) -> bool {
        match kind {
            HelperKind::Network => self.ops.holds_network(id),
            HelperKind::Sandbox => self.ops.holds_container(id),
        }
    }
}
