//! No address is held twice: not within a network, and not across networks (two
//! networks whose subnets overlap would hand out the same address twice).

use std::collections::BTreeMap;
use std::net::IpAddr;

use container_protocol::api::FindingKind;
use container_store::container::{list_containers, Status};

use super::Check;

impl Check<'_> {
    pub(super) async fn addresses(&mut self) {
        let mut holders: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        for id in list_containers(self.paths) {
            let Ok((_, state)) = self.containers.load(&id) else {
                continue;
            };
            if state.status != Status::Running {
                continue;
            }
            for a in &state.allocations {
                for net in &a.addresses {
                    holders
                        .entry(net.addr())
                        .or_default()
                        .push(format!("{id} on {}", a.network));
                }
            }
        }
        for (ip, who) in holders {
            if who.len() > 1 {
                self.report(
                    FindingKind::DuplicateAddress,
                    ip.to_string(),
                    format!("held by {}", who.join(", ")),
                    false,
                );
            }
        }
    }
}
