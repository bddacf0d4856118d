//! What the kernel and the run directory hold that no record names: host veths and
//! bridges, netns mounts, helper files, IPAM directories, nftables chains.

use std::collections::HashSet;

use container_netlink::{LinkInfo, Owner};
use container_protocol::api::FindingKind;
use container_protocol::HelperKind;
use container_store::container::list_containers;

use super::Check;

/// What the records say is live, for judging what the host holds.
struct Live {
    network_ids: HashSet<String>,
    containers: HashSet<String>,
}

impl Check<'_> {
    pub(super) async fn host(&mut self) {
        let networks = self.containers.records().networks();
        let live = Live {
            network_ids: networks.iter().map(|n| n.id.clone()).collect(),
            containers: self.live_containers(),
        };
        self.ipam_dirs(&live);
        self.links(&live).await;
        self.netns(&live);
        self.helper_files(&live);
        self.nft_chains(&live);
    }

    fn ipam_dirs(&mut self, live: &Live) {
        let Ok(entries) = std::fs::read_dir(self.paths.ipam()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !live.network_ids.contains(&name) && !self.ops.holds_network(&name) {
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

    /// Host links the runtime made (they carry their owner) whose owner is gone. A
    /// link without the mark is never ours, whatever its name.
    async fn links(&mut self, live: &Live) {
        let leaked = |links: Vec<LinkInfo>| -> Vec<(LinkInfo, Owner)> {
            links
                .into_iter()
                .filter_map(|link| {
                    let owner = Owner::parse(link.alias.as_deref()?)?;
                    let gone = match &owner {
                        Owner::Container { id, .. } => !live.containers.contains(id),
                        Owner::Network { id } => {
                            !live.network_ids.contains(id) && !self.ops.holds_network(id)
                        }
                    };
                    gone.then_some((link, owner))
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
                for (link, owner) in links {
                    let kind = link.kind.clone().unwrap_or_default();
                    let whose = match owner {
                        Owner::Container { id, ifname } => format!("container {id} ({ifname})"),
                        Owner::Network { id } => format!("network {id}"),
                    };
                    let fixed = self.fix && netlink.delete_link_by_name(&link.name).await.is_ok();
                    self.report(
                        FindingKind::Link,
                        &link.name,
                        format!("{kind} of {whose}, which is gone"),
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
    }

    /// A netns mount is the container's while it runs or is being started; a helper
    /// alive for it otherwise is an orphan, reported with the helpers, whose shutdown
    /// takes it.
    fn netns(&mut self, live: &Live) {
        let Ok(entries) = std::fs::read_dir(self.paths.netns_dir()) else {
            return;
        };
        let sandboxes = self.containers.sandboxes().clone();
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if live.containers.contains(&id)
                || (!self.fix && (sandboxes.get(&id).is_some() || sandboxes.stuck(&id).is_some()))
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

    fn helper_files(&mut self, live: &Live) {
        let containers: HashSet<String> = self
            .containers
            .records()
            .container_ids()
            .into_iter()
            .chain(list_containers(self.paths))
            .collect();
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
                            live.network_ids.contains(id),
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
    }

    fn nft_chains(&mut self, live: &Live) {
        let firewall = container_firewall::Firewall::new();
        match firewall.list_networks() {
            Ok(ids) => {
                for id in ids
                    .into_iter()
                    .filter(|id| !live.network_ids.contains(id) && !self.ops.holds_network(id))
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
