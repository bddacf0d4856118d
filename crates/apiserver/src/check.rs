//! `container system check [--fix]`: every leaked or inconsistent resource, found from
//! the kernel and the disk rather than from memory. `--fix` repairs with the same code
//! the apiserver runs at start and on exit paths.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use container_protocol::api::Finding;
use container_protocol::network::{NetworkRequest, NetworkResponse};
use container_protocol::HelperKind;
use container_store::container::{list_containers, load_state, Status};
use container_store::network::load_networks;

use crate::daemon::ApiServer;
use crate::error::ApiError;

fn finding(kind: &str, object: impl Into<String>, detail: impl Into<String>) -> Finding {
    Finding {
        kind: kind.to_string(),
        object: object.into(),
        detail: detail.into(),
        fixed: false,
    }
}

impl ApiServer {
    pub async fn check(self: &Arc<Self>, fix: bool) -> Result<Vec<Finding>, ApiError> {
        let mut found = Vec::new();

        // Containers first: the rest is judged against the live set they define.
        for id in list_containers(&self.paths) {
            let Ok(state) = load_state(&self.paths, &id) else {
                found.push(finding("container", &id, "state record unreadable"));
                continue;
            };
            if state.status == Status::Running
                && self.sandboxes.get(&id).is_none_or(|h| h.client.is_closed())
            {
                let mut f = finding("container", &id, "running, but its sandbox helper is gone");
                if fix {
                    self.finish(
                        &id,
                        None,
                        Some("sandbox helper gone (found by system check)".into()),
                    )
                    .await;
                    f.fixed = true;
                }
                found.push(f);
            }
        }

        let mut live_attachments: HashSet<(String, String, String)> = HashSet::new();
        let mut live_host_links: HashSet<String> = HashSet::new();
        let mut live_ids: HashSet<String> = HashSet::new();
        let mut addresses: BTreeMap<(String, std::net::IpAddr), Vec<String>> = BTreeMap::new();
        for id in list_containers(&self.paths) {
            let Ok(state) = load_state(&self.paths, &id) else {
                continue;
            };
            if state.status != Status::Running {
                continue;
            }
            live_ids.insert(id.clone());
            for a in &state.allocations {
                live_attachments.insert((
                    a.network.clone(),
                    a.container_id.clone(),
                    a.ifname.clone(),
                ));
                for net in &a.addresses {
                    addresses
                        .entry((a.network.clone(), net.addr()))
                        .or_default()
                        .push(id.clone());
                }
            }
            live_host_links.extend(
                state
                    .interfaces
                    .iter()
                    .filter_map(|i| i.host_ifname.clone()),
            );
        }
        for ((network, ip), holders) in &addresses {
            if holders.len() > 1 {
                found.push(finding(
                    "duplicate-address",
                    format!("{network} {ip}"),
                    format!("held by {}", holders.join(", ")),
                ));
            }
        }

        let (networks, bad) = load_networks(&self.paths);
        for e in bad {
            found.push(finding("network", "record", e.to_string()));
        }
        let network_ids: HashSet<String> = networks.iter().map(|n| n.id.clone()).collect();
        for net in &networks {
            let helper = match self.network_helper(&net.id).await {
                Ok(h) => h,
                Err(e) => {
                    found.push(finding(
                        "network",
                        &net.id,
                        format!("helper cannot start: {e}"),
                    ));
                    continue;
                }
            };
            let Ok(NetworkResponse::State(state)) = helper.client.call(NetworkRequest::State).await
            else {
                found.push(finding(
                    "network",
                    &net.id,
                    "helper did not report its state",
                ));
                continue;
            };
            let stale: Vec<_> = state
                .reservations
                .iter()
                .filter(|r| {
                    !live_attachments.contains(&(
                        net.id.clone(),
                        r.container_id.clone(),
                        r.ifname.clone(),
                    ))
                })
                .collect();
            if stale.is_empty() {
                continue;
            }
            let released = if fix {
                let live = self.live_attachments(&net.id);
                match helper.client.call(NetworkRequest::Gc { live }).await {
                    Ok(NetworkResponse::Collected(list)) => {
                        list.into_iter().map(|r| r.ip).collect()
                    }
                    _ => vec![],
                }
            } else {
                vec![]
            };
            for r in stale {
                let mut f = finding(
                    "reservation",
                    format!("{} {}", net.id, r.ip),
                    format!(
                        "held for {} {} which is not running",
                        r.container_id, r.ifname
                    ),
                );
                f.fixed = released.contains(&r.ip);
                found.push(f);
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.paths.ipam()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !network_ids.contains(&name) {
                    let mut f = finding(
                        "ipam-dir",
                        &name,
                        "IPAM directory of a network that does not exist",
                    );
                    if fix {
                        f.fixed = std::fs::remove_dir_all(e.path()).is_ok();
                    }
                    found.push(f);
                }
            }
        }

        let bridges: HashSet<String> = networks
            .iter()
            .filter_map(container_network_helper::plugins::bridge_name)
            .collect();
        let leaked_links =
            |links: Vec<container_netlink::LinkInfo>| -> Vec<container_netlink::LinkInfo> {
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
        let mut candidates = self.host_netlink.links().await.map(leaked_links);
        if candidates.as_ref().is_ok_and(|c| !c.is_empty()) {
            // A stopped container's veth pair dies with its namespace in the kernel's
            // background cleanup: only what is still there a moment later has leaked.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            candidates = self.host_netlink.links().await.map(leaked_links);
        }
        match candidates {
            Ok(links) => {
                for link in links {
                    let kind = link.kind.as_deref().unwrap_or("");
                    {
                        let mut f = finding(
                            "link",
                            &link.name,
                            format!("{kind} with no live container or network"),
                        );
                        if fix {
                            f.fixed = self
                                .host_netlink
                                .delete_link_by_name(&link.name)
                                .await
                                .is_ok();
                        }
                        found.push(f);
                    }
                }
            }
            Err(e) => found.push(finding("link", "host", format!("cannot list links: {e}"))),
        }

        if let Ok(entries) = std::fs::read_dir(self.paths.netns_dir()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if !live_ids.contains(&id) && self.sandboxes.get(&id).is_none() {
                    let mut f = finding(
                        "netns",
                        e.path().display().to_string(),
                        "network namespace mount with no running container",
                    );
                    if fix {
                        f.fixed = container_netlink::NetNs::remove_bound(e.path()).is_ok();
                    }
                    found.push(f);
                }
            }
        }

        let containers: HashSet<String> = list_containers(&self.paths).into_iter().collect();
        for kind in HelperKind::ALL {
            let Ok(entries) = std::fs::read_dir(self.paths.helper_dir(kind.as_str())) else {
                continue;
            };
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                let Some((id, ext)) = file.rsplit_once('.') else {
                    continue;
                };
                let alive = match kind {
                    HelperKind::Network => self.networks.get(id).is_some(),
                    HelperKind::Sandbox => self.sandboxes.get(id).is_some(),
                };
                let owner_exists = match kind {
                    HelperKind::Network => network_ids.contains(id),
                    HelperKind::Sandbox => containers.contains(id),
                };
                let leaked = match ext {
                    "sock" | "pid" => !alive,
                    "log" => !owner_exists,
                    _ => false,
                };
                if leaked {
                    let mut f = finding(
                        "helper-file",
                        e.path().display().to_string(),
                        format!("{kind} helper {id} is not alive"),
                    );
                    if fix {
                        f.fixed = std::fs::remove_file(e.path()).is_ok();
                    }
                    found.push(f);
                }
            }
        }

        let firewall = container_firewall::Firewall::new();
        match firewall.list_networks() {
            Ok(ids) => {
                for id in ids.into_iter().filter(|id| !network_ids.contains(id)) {
                    let mut f = finding(
                        "nft-chain",
                        &id,
                        "nftables chains of a network that does not exist",
                    );
                    if fix {
                        f.fixed = firewall.teardown_network(&id).is_ok();
                    }
                    found.push(f);
                }
            }
            Err(e) => found.push(finding("nft-chain", "table", format!("cannot list: {e}"))),
        }
        Ok(found)
    }
}
