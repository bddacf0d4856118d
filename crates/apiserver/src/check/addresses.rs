//! No address is held twice: not within a network, and not across networks (two
//! networks whose subnets overlap would hand out the same address twice).

use std::collections::BTreeMap;
use std::net::IpAddr;

use container_protocol::api::FindingKind;
use container_store::container::Status;

use super::Check;

impl Check<'_> {
    pub(super) async fn addresses(&mut self) {
        let mut holders: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        for id in self.containers.records().container_ids() {
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
        for (ip, who) in held_twice(holders) {
            self.report(
                FindingKind::DuplicateAddress,
                ip.to_string(),
                format!("held by {}", who.join(", ")),
                false,
            );
        }
    }
}

/// Addresses with more than one holder. Keyed by address alone: the same address on two
/// networks is as much a duplicate as twice on one (their subnets overlap).
fn held_twice(holders: BTreeMap<IpAddr, Vec<String>>) -> Vec<(IpAddr, Vec<String>)> {
    holders
        .into_iter()
        .filter(|(_, who)| who.len() > 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_address_on_two_networks_is_a_duplicate() {
        let mut holders: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        let a: IpAddr = "10.55.0.2".parse().unwrap();
        let b: IpAddr = "10.55.0.3".parse().unwrap();
        holders.entry(a).or_default().push("c1 on cninet".into());
        holders.entry(a).or_default().push("c2 on bridgenet".into());
        holders.entry(b).or_default().push("c3 on bridgenet".into());
        assert_eq!(
            held_twice(holders),
            vec![(
                a,
                vec!["c1 on cninet".to_string(), "c2 on bridgenet".to_string()]
            )]
        );
    }
}
