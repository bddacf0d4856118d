//! Each listed network: its helper answers, its devices and firewall rules are there,
//! no reservation outlives its attachment and no live attachment lost its reservation,
//! and no removal was left half done.

use std::collections::HashSet;

use container_protocol::api::FindingKind;
use container_store::container::Status;
use container_store::network::load_networks;
use container_store::NetworkConfig;

use super::Check;

impl Check<'_> {
    pub(super) async fn networks(&mut self) {
        let (_, bad) = load_networks(self.paths);
        for e in bad {
            self.report(FindingKind::Network, "record", e.to_string(), false);
        }
        let networks = self.containers.records().networks();
        let chains: Option<HashSet<String>> = container_firewall::Firewall::new()
            .list_networks()
            .ok()
            .map(|l| l.into_iter().collect());
        for net in networks {
            if self.ops.holds_network(&net.id) {
                continue;
            }
            if net.removing {
                let mut fixed = false;
                if self.fix {
                    fixed = self.networks.remove(vec![net.id.clone()]).await.is_ok();
                }
                self.report(
                    FindingKind::Network,
                    &net.id,
                    "its removal was interrupted",
                    fixed,
                );
                continue;
            }
            self.network(&net, chains.as_ref()).await;
        }
    }

    async fn network(&mut self, net: &NetworkConfig, chains: Option<&HashSet<String>>) {
        let name = &net.id;
        // A stuck helper may answer by now: try it before calling it stuck.
        self.networks.table().reach_stuck(name).await;
        if let Some(stuck) = self.networks.table().stuck(name) {
            let mut fixed = false;
            if self.fix {
                // A new helper picks the network's resources up where this one left them.
                fixed = self.networks.table().kill(name).await
                    && self.networks.helper(name).await.is_ok();
            }
            self.report(
                FindingKind::Helper,
                format!("network {name}"),
                format!("pid {} is alive and does not answer", stuck.pidfd.pid()),
                fixed,
            );
            if !fixed {
                return;
            }
        }
        let helper = match self.networks.helper(name).await {
            Ok(h) => h,
            Err(e) => {
                self.report(
                    FindingKind::Network,
                    name,
                    format!("helper cannot start: {e}"),
                    false,
                );
                return;
            }
        };
        let state = match helper.state().await {
            Ok(s) => s,
            Err(e) => {
                let mut fixed = false;
                if self.fix && e.kind() == container_protocol::ErrorKind::Unavailable {
                    fixed = self.networks.table().kill(name).await
                        && self.networks.helper(name).await.is_ok();
                }
                self.report(
                    FindingKind::Helper,
                    format!("network {name}"),
                    format!("{e}"),
                    fixed,
                );
                return;
            }
        };

        // The network's own devices and rules.
        let link_missing = state.link.is_some() && state.link_up.is_none();
        let chains_missing = container_network_helper::plugins::bridge_name(net).is_some()
            && chains.is_some_and(|c| !c.contains(name));
        if link_missing || chains_missing {
            let what = match (link_missing, chains_missing) {
                (true, true) => format!(
                    "link {} and its nftables chains are missing",
                    state.link.clone().unwrap_or_default()
                ),
                (true, false) => {
                    format!("link {} is missing", state.link.clone().unwrap_or_default())
                }
                _ => "its nftables chains are missing".to_string(),
            };
            let fixed = self.fix && helper.setup().await.is_ok();
            self.report(FindingKind::Network, name, what, fixed);
        }

        // Reservations against live attachments, both ways.
        let mut live: HashSet<(String, String)> = HashSet::new();
        for id in self.containers.records().container_ids() {
            let Ok((_, s)) = self.containers.load(&id) else {
                continue;
            };
            if s.status != Status::Running {
                continue;
            }
            for a in s.allocations.iter().filter(|a| &a.network == name) {
                live.insert((a.container_id.clone(), a.ifname.clone()));
                let reserved: Vec<_> = state
                    .reservations
                    .iter()
                    .filter(|r| r.container_id == a.container_id && r.ifname == a.ifname)
                    .map(|r| r.ip)
                    .collect();
                let missing: Vec<_> = a
                    .addresses
                    .iter()
                    .map(|n| n.addr())
                    .filter(|ip| !reserved.contains(ip))
                    .collect();
                if missing.is_empty() || self.ops.holds_container(&id) {
                    continue;
                }
                let mut fixed = false;
                if self.fix {
                    match helper
                        .restore(&a.container_id, &a.ifname, missing.clone())
                        .await
                    {
                        Ok(_) => fixed = true,
                        Err(e) => tracing::warn!("check: restore {name} {:?}: {e}", missing),
                    }
                }
                for ip in missing {
                    self.report(
                        FindingKind::MissingReservation,
                        format!("{name} {ip}"),
                        format!(
                            "held by running container {id} ({}) but not reserved on disk",
                            a.ifname
                        ),
                        fixed,
                    );
                }
            }
        }
        live.extend(self.ops.attachments_on(name));
        let stale: Vec<_> = state
            .reservations
            .iter()
            .filter(|r| !live.contains(&(r.container_id.clone(), r.ifname.clone())))
            .filter(|r| !self.ops.holds_container(&r.container_id))
            .cloned()
            .collect();
        if stale.is_empty() {
            return;
        }
        let released: Vec<_> = if self.fix {
            let _gate = self.networks.gc_gate(name).await;
            match helper.gc(self.networks.live_attachments(name)).await {
                Ok(list) => list.into_iter().map(|r| r.ip).collect(),
                Err(e) => {
                    tracing::warn!("check: gc {name}: {e}");
                    vec![]
                }
            }
        } else {
            vec![]
        };
        for r in stale {
            self.report(
                FindingKind::Reservation,
                format!("{name} {}", r.ip),
                format!(
                    "held for {} {} which is not running",
                    r.container_id, r.ifname
                ),
                released.contains(&r.ip),
            );
        }
    }
}
