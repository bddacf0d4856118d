//! Planning: turns a request plus the table as it is now into one nftables JSON batch.
//! Pure, so every layout decision is unit-tested without a kernel.
//!
//! Layout of `table inet <table>`:
//!
//! ```text
//! set bridges     { type ifname }                    every project bridge (isolation)
//! map bridge-fwd  { type ifname : verdict }          bridge -> jump nw-<id>-fwd
//! chain input       filter/input    prio 0    iifname @bridges ip daddr 127.0.0.0/8
//!                                               ct status dnat accept, else drop
//! chain forward     filter/forward  prio 0    iifname vmap @bridge-fwd
//!                                             oifname vmap @bridge-fwd
//! chain postrouting nat/postrouting prio 100  jump nw-<id>-nat                (one per network)
//! chain prerouting  nat/prerouting  prio -100 fib daddr type local jump nw-<id>-dnat
//! chain output      nat/output      prio -100 fib daddr type local jump nw-<id>-dnat
//! chain nw-<id>-fwd   forwarding policy of one bridge
//! chain nw-<id>-nat   masquerade (empty for internal networks)
//! chain nw-<id>-dnat  port forwards, one rule each, commented with the container id
//! ```
//!
//! Why two dispatch styles: `forward` runs for every packet, so it finds the network
//! with one verdict-map lookup on the bridge name, and the map element is the network's
//! whole footprint there. NAT chains run only for the first packet of a connection, so a
//! list of per-network jumps costs little there, and masquerade/DNAT cannot be keyed by
//! the bridge anyway (egress leaves by any interface; DNAT happens before routing).
//! Either way base chains never hold per-network logic: a network is removed by deleting
//! its map elements, its jump rules (by handle) and its own chains, never by rewriting
//! what other networks share — so helpers of different networks never race on a shared
//! rewrite. The static rules of `input` and `forward` are flushed and re-added by every
//! setup, which is idempotent and repairs a hand-edited chain.
//!
//! Why `input`: the bridge plugin sets `route_localnet` on its bridges so that published
//! ports answer on 127.0.0.1, and with it the kernel would deliver a container's packet
//! for 127.0.0.1 (sent via its gateway, or crafted on a raw socket) to the host's
//! loopback-only services: CVE-2020-8558's class. The guard drops such packets unless
//! they belong to a DNATed connection, which is how kube-proxy closed it; replies of a
//! host client's connection to a published port on 127.0.0.1 are that.

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::batch::*;
use crate::state::{Rule, TableState};
use crate::validate::effective_host_ip;
use crate::{NetworkRules, PortForward};

pub(crate) const SET_BRIDGES: &str = "bridges";
pub(crate) const MAP_BRIDGE_FWD: &str = "bridge-fwd";
pub(crate) const INPUT: &str = "input";
pub(crate) const FORWARD: &str = "forward";
pub(crate) const POSTROUTING: &str = "postrouting";
pub(crate) const PREROUTING: &str = "prerouting";
pub(crate) const OUTPUT: &str = "output";

const CHAIN_PREFIX: &str = "nw-";

/// The chains a network owns; the suffix is how a chain name decodes to its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Own {
    Fwd,
    Nat,
    Dnat,
}

impl Own {
    const ALL: [Own; 3] = [Own::Fwd, Own::Nat, Own::Dnat];

    fn suffix(self) -> &'static str {
        match self {
            Own::Fwd => "-fwd",
            Own::Nat => "-nat",
            Own::Dnat => "-dnat",
        }
    }
}

pub(crate) fn chain_name(network: &str, own: Own) -> String {
    format!("{CHAIN_PREFIX}{network}{}", own.suffix())
}

/// The network owning `chain`, if it is one of ours. Unambiguous although ids may
/// contain '-': "-dnat" never ends in "-nat", and the suffix is always the last part.
pub(crate) fn network_of_chain(chain: &str) -> Option<&str> {
    let rest = chain.strip_prefix(CHAIN_PREFIX)?;
    Own::ALL
        .iter()
        .find_map(|own| rest.strip_suffix(own.suffix()))
        .filter(|id| !id.is_empty())
}

fn owned_by(chain: &str, network: &str) -> bool {
    network_of_chain(chain) == Some(network)
}

/// The table, its base chains, set and map: `add` of an existing object is a no-op, so
/// every setup can start with this and not care whether it is the first.
fn ensure_skeleton(batch: &mut Batch) {
    batch.add_table();
    batch.add_set(SET_BRIDGES, "ifname");
    batch.add_verdict_map(MAP_BRIDGE_FWD, "ifname");
    batch.add_base_chain(INPUT, "filter", "input", 0);
    batch.add_base_chain(FORWARD, "filter", "forward", 0);
    batch.add_base_chain(POSTROUTING, "nat", "postrouting", 100);
    batch.add_base_chain(PREROUTING, "nat", "prerouting", -100);
    batch.add_base_chain(OUTPUT, "nat", "output", -100);
    batch.flush_chain(INPUT);
    for expr in loopback_guard() {
        batch.add_rule(INPUT, expr, None);
    }
    batch.flush_chain(FORWARD);
    let dispatch = format!("@{MAP_BRIDGE_FWD}");
    for key in ["iifname", "oifname"] {
        batch.add_rule(
            FORWARD,
            vec![json!({"vmap": {"key": {"meta": {"key": key}}, "data": dispatch}})],
            None,
        );
    }
}

/// Packets from any project bridge to the host's 127.0.0.0/8: only those of DNATed
/// connections pass.
fn loopback_guard() -> Vec<Vec<Value>> {
    let to_loopback = [
        iifname_in_set(SET_BRIDGES),
        daddr_prefix(true, "127.0.0.0", 8),
    ];
    vec![
        [&to_loopback[..], &[ct("status", json!("dnat")), accept()]].concat(),
        [&to_loopback[..], &[drop()]].concat(),
    ]
}

fn forward_rules(net: &NetworkRules) -> Vec<Vec<Value>> {
    let br = net.bridge.as_str();
    // Intra-bridge first: the bridge itself is in @bridges, and must not be isolated
    // from itself.
    let mut rules = vec![
        vec![iifname(br), oifname(br), accept()],
        vec![iifname(br), oifname_in_set(SET_BRIDGES), drop()],
    ];
    if net.internal {
        rules.push(vec![iifname(br), drop()]);
    } else {
        rules.extend([
            vec![iifname(br), accept()],
            vec![
                oifname(br),
                ct("state", json!(["established", "related"])),
                accept(),
            ],
            // Published ports: DNAT already decided this connection may come in.
            vec![oifname(br), ct("status", json!("dnat")), accept()],
        ]);
    }
    // Unsolicited inbound: nobody routes into a container except through a published
    // port, as with Docker and Podman.
    rules.push(vec![oifname(br), drop()]);
    rules
}

fn nat_rules(net: &NetworkRules) -> Vec<Vec<Value>> {
    if net.internal {
        return Vec::new();
    }
    let br = net.bridge.as_str();
    let mut rules = Vec::new();
    for subnet in &net.subnets {
        rules.push(vec![saddr_in(subnet), oifname_not(br), masquerade()]);
        // Hairpin: a container reaching a published port of its own network through a
        // host address must see replies come back from that address.
        rules.push(vec![
            oifname(br),
            ct("status", json!("dnat")),
            saddr_in(subnet),
            masquerade(),
        ]);
    }
    if net.subnets.iter().any(|s| matches!(s, IpNet::V4(_))) {
        // Host processes reaching a published port on 127.0.0.1: the container cannot
        // answer a loopback source. (Routing such packets also needs route_localnet on
        // the bridge, which is the bridge plugin's business, not the firewall's.)
        rules.push(vec![
            oifname(br),
            ct("status", json!("dnat")),
            saddr_prefix(true, "127.0.0.0", 8),
            masquerade(),
        ]);
    }
    rules
}

/// Rules outside `network`'s own chains that jump into them.
fn jumps_into<'a>(state: &'a TableState, network: &'a str) -> impl Iterator<Item = &'a Rule> {
    state.rules.iter().filter(move |rule| {
        !owned_by(&rule.chain, network) && rule.targets.iter().any(|t| owned_by(t, network))
    })
}

/// Setup refused because the bridge is already dispatched to another network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BridgeInUse {
    pub other: String,
}

pub(crate) fn plan_setup(
    table: &str,
    net: &NetworkRules,
    state: &TableState,
) -> Result<Batch, BridgeInUse> {
    let id = net.id.as_str();
    let bridge = json!(net.bridge);
    let fwd = chain_name(id, Own::Fwd);
    let nat = chain_name(id, Own::Nat);
    let dnat_chain = chain_name(id, Own::Dnat);

    if let Some(taken) = state
        .map_jumps
        .iter()
        .find(|e| e.map == MAP_BRIDGE_FWD && e.key == bridge && e.target != fwd)
    {
        return Err(BridgeInUse {
            other: network_of_chain(&taken.target)
                .unwrap_or(&taken.target)
                .to_string(),
        });
    }

    let mut batch = Batch::new(table);
    ensure_skeleton(&mut batch);

    // Re-filled from scratch so that a second setup, or one with changed settings,
    // leaves exactly one current copy. The dnat chain is only ensured: its port
    // forwards belong to containers and must survive a helper re-running setup.
    for (chain, rules) in [(&fwd, forward_rules(net)), (&nat, nat_rules(net))] {
        batch.add_chain(chain);
        batch.flush_chain(chain);
        for expr in rules {
            batch.add_rule(chain, expr, None);
        }
    }
    batch.add_chain(&dnat_chain);

    // A previous setup with another bridge name left elements under the old key.
    for stale in state
        .map_jumps
        .iter()
        .filter(|e| e.map == MAP_BRIDGE_FWD && e.target == fwd && e.key != bridge)
    {
        batch.delete_element(MAP_BRIDGE_FWD, stale.key.clone());
        if state.set_contains(SET_BRIDGES, &stale.key) {
            batch.delete_element(SET_BRIDGES, stale.key.clone());
        }
    }
    batch.add_element(SET_BRIDGES, bridge.clone());
    batch.add_element(MAP_BRIDGE_FWD, json!([bridge, jump(&fwd)]));

    let wanted = [
        (POSTROUTING, &nat, vec![jump(&nat)]),
        (
            PREROUTING,
            &dnat_chain,
            vec![fib_daddr_local(), jump(&dnat_chain)],
        ),
        (
            OUTPUT,
            &dnat_chain,
            vec![fib_daddr_local(), jump(&dnat_chain)],
        ),
    ];
    for (base, target, expr) in wanted {
        let mut existing = state
            .rules
            .iter()
            .filter(|r| r.chain == base && r.targets.iter().any(|t| t == target));
        if existing.next().is_none() {
            batch.add_rule(base, expr, None);
        }
        // Two concurrent first setups of one network could each add a jump.
        for duplicate in existing {
            batch.delete_rule(base, duplicate.handle);
        }
    }
    Ok(batch)
}

/// Everything of `network` and nothing else; `None` when it has nothing left.
pub(crate) fn plan_teardown(table: &str, network: &str, state: &TableState) -> Option<Batch> {
    let mut batch = Batch::new(table);
    // References first: the kernel refuses to delete a chain something still jumps to.
    for elem in state
        .map_jumps
        .iter()
        .filter(|e| owned_by(&e.target, network))
    {
        batch.delete_element(&elem.map, elem.key.clone());
        if elem.map == MAP_BRIDGE_FWD && state.set_contains(SET_BRIDGES, &elem.key) {
            batch.delete_element(SET_BRIDGES, elem.key.clone());
        }
    }
    for rule in jumps_into(state, network) {
        batch.delete_rule(&rule.chain, rule.handle);
    }
    // Deleting a chain deletes its rules with it.
    for chain in state.chains.iter().filter(|c| owned_by(c, network)) {
        batch.delete_chain(chain);
    }
    (!batch.is_empty()).then_some(batch)
}

fn forwards_of<'a>(
    state: &'a TableState,
    network: &str,
    container: &'a str,
) -> impl Iterator<Item = &'a Rule> {
    let chain = chain_name(network, Own::Dnat);
    state
        .rules
        .iter()
        .filter(move |r| r.chain == chain && r.comment.as_deref() == Some(container))
}

pub(crate) fn has_network(state: &TableState, network: &str) -> bool {
    state.chains.contains(&chain_name(network, Own::Dnat))
}

fn forward_rule(forward: &PortForward) -> Vec<Value> {
    let to = forward.container_ip;
    let target = match effective_host_ip(forward) {
        Some(host) => daddr_is(host),
        None => nfproto(to.is_ipv4()),
    };
    vec![
        target,
        dport(forward.protocol, forward.host_port),
        dnat(to, forward.container_port),
    ]
}

/// Replaces the container's forwards on `network` with `forwards`, so a retried call
/// leaves one copy. The caller checks [`has_network`] first.
pub(crate) fn plan_port_forwards(
    table: &str,
    network: &str,
    container: &str,
    forwards: &[PortForward],
    state: &TableState,
) -> Batch {
    let chain = chain_name(network, Own::Dnat);
    let mut batch = Batch::new(table);
    for old in forwards_of(state, network, container) {
        batch.delete_rule(&chain, old.handle);
    }
    for forward in forwards {
        batch.add_rule(&chain, forward_rule(forward), Some(container));
    }
    batch
}

pub(crate) fn plan_remove_port_forwards(
    table: &str,
    network: &str,
    container: &str,
    state: &TableState,
) -> Option<Batch> {
    let chain = chain_name(network, Own::Dnat);
    let mut batch = Batch::new(table);
    for old in forwards_of(state, network, container) {
        batch.delete_rule(&chain, old.handle);
    }
    (!batch.is_empty()).then_some(batch)
}

/// `add` first so that deleting a table that is already gone still succeeds.
pub(crate) fn plan_teardown_all(table: &str) -> Batch {
    let mut batch = Batch::new(table);
    batch.add_table();
    batch.delete_table();
    batch
}

pub(crate) fn networks(state: &TableState) -> Vec<String> {
    let ids: std::collections::BTreeSet<&str> = state
        .chains
        .iter()
        .filter_map(|c| network_of_chain(c))
        .collect();
    ids.into_iter().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MapJump;
    use crate::Protocol;

    fn net(id: &str, bridge: &str, subnets: &[&str], internal: bool) -> NetworkRules {
        NetworkRules {
            id: id.into(),
            bridge: bridge.into(),
            subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
            internal,
        }
    }

    /// Bodies of the batch's `<verb> <kind>` commands, in order.
    fn cmds<'a>(batch: &'a Batch, verb: &str, kind: &str) -> Vec<&'a Value> {
        batch
            .commands()
            .iter()
            .filter_map(|c| c.get(verb)?.get(kind))
            .collect()
    }

    fn names(batch: &Batch, verb: &str, kind: &str) -> Vec<String> {
        cmds(batch, verb, kind)
            .iter()
            .map(|b| b["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Expressions of the rules the batch adds to `chain`, in order.
    fn added_rules<'a>(batch: &'a Batch, chain: &str) -> Vec<&'a Vec<Value>> {
        cmds(batch, "add", "rule")
            .into_iter()
            .filter(|b| b["chain"] == chain)
            .filter_map(|b| b["expr"].as_array())
            .collect()
    }

    fn masquerades(batch: &Batch) -> usize {
        cmds(batch, "add", "rule")
            .iter()
            .filter(|b| b["expr"].as_array().unwrap().contains(&masquerade()))
            .count()
    }

    fn rule(chain: &str, handle: u64, targets: &[&str], comment: Option<&str>) -> Rule {
        Rule {
            chain: chain.into(),
            handle,
            comment: comment.map(str::to_string),
            targets: targets.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn chain_names_decode_back_to_ids() {
        for id in ["n1", "a-dnat", "x-nat-fwd", "a.b_c", "fwd"] {
            for own in Own::ALL {
                assert_eq!(network_of_chain(&chain_name(id, own)), Some(id));
            }
        }
        for foreign in ["forward", "nw-", "nw--fwd", "nw-a", "x-a-fwd", "nw-a-nat2"] {
            assert_eq!(network_of_chain(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn setup_from_nothing_builds_skeleton_and_network() {
        let n = net("n1", "br1", &["10.88.0.1/16", "fd00::/64"], false);
        let batch = plan_setup("t", &n, &TableState::default()).unwrap();
        assert_eq!(
            batch.commands()[0],
            json!({"add": {"table": {"family": "inet", "name": "t"}}})
        );
        let hooks: Vec<_> = cmds(&batch, "add", "chain")
            .iter()
            .filter_map(|c| c.get("hook")?.as_str())
            .collect();
        assert_eq!(
            hooks,
            ["input", "forward", "postrouting", "prerouting", "output"]
        );
        assert_eq!(
            added_rules(&batch, INPUT),
            [
                &vec![
                    iifname_in_set("bridges"),
                    daddr_prefix(true, "127.0.0.0", 8),
                    ct("status", json!("dnat")),
                    accept()
                ],
                &vec![
                    iifname_in_set("bridges"),
                    daddr_prefix(true, "127.0.0.0", 8),
                    drop()
                ],
            ]
        );
        assert_eq!(
            added_rules(&batch, FORWARD),
            [
                &vec![
                    json!({"vmap": {"key": {"meta": {"key": "iifname"}}, "data": "@bridge-fwd"}})
                ],
                &vec![
                    json!({"vmap": {"key": {"meta": {"key": "oifname"}}, "data": "@bridge-fwd"}})
                ],
            ]
        );
        let chains = names(&batch, "add", "chain");
        for chain in ["nw-n1-fwd", "nw-n1-nat", "nw-n1-dnat"] {
            assert_eq!(chains.iter().filter(|c| *c == chain).count(), 1, "{chain}");
        }
        // Egress and hairpin per subnet, host bits cleared, plus loopback for v4.
        let nat = added_rules(&batch, "nw-n1-nat");
        assert_eq!(nat.len(), 5);
        assert_eq!(
            nat[0],
            &vec![
                saddr_prefix(true, "10.88.0.0", 16),
                oifname_not("br1"),
                masquerade()
            ]
        );
        assert_eq!(
            nat[2],
            &vec![
                saddr_prefix(false, "fd00::", 64),
                oifname_not("br1"),
                masquerade()
            ]
        );
        assert_eq!(masquerades(&batch), 5);
        let elements = cmds(&batch, "add", "element");
        assert_eq!(elements[0]["name"], SET_BRIDGES);
        assert_eq!(elements[0]["elem"], json!(["br1"]));
        assert_eq!(elements[1]["name"], MAP_BRIDGE_FWD);
        assert_eq!(
            elements[1]["elem"],
            json!([["br1", {"jump": {"target": "nw-n1-fwd"}}]])
        );
        assert_eq!(added_rules(&batch, POSTROUTING), [&vec![jump("nw-n1-nat")]]);
        for base in [PREROUTING, OUTPUT] {
            assert_eq!(
                added_rules(&batch, base),
                [&vec![fib_daddr_local(), jump("nw-n1-dnat")]]
            );
        }
        assert!(batch.commands().iter().all(|c| c.get("delete").is_none()));
    }

    #[test]
    fn non_internal_forwarding_policy() {
        let n = net("n1", "br1", &["10.88.0.0/16"], false);
        let batch = plan_setup("t", &n, &TableState::default()).unwrap();
        let fwd = added_rules(&batch, "nw-n1-fwd");
        let expected: Vec<Vec<Value>> = vec![
            vec![iifname("br1"), oifname("br1"), accept()],
            vec![iifname("br1"), oifname_in_set("bridges"), drop()],
            vec![iifname("br1"), accept()],
            vec![
                oifname("br1"),
                ct("state", json!(["established", "related"])),
                accept(),
            ],
            vec![oifname("br1"), ct("status", json!("dnat")), accept()],
            vec![oifname("br1"), drop()],
        ];
        assert_eq!(fwd, expected.iter().collect::<Vec<_>>());
    }

    #[test]
    fn internal_network_has_no_masquerade_and_drops_egress() {
        let n = net("n1", "br1", &["10.88.0.0/16"], true);
        let batch = plan_setup("t", &n, &TableState::default()).unwrap();
        assert_eq!(masquerades(&batch), 0);
        assert!(added_rules(&batch, "nw-n1-nat").is_empty());
        let fwd = added_rules(&batch, "nw-n1-fwd");
        let expected: Vec<Vec<Value>> = vec![
            vec![iifname("br1"), oifname("br1"), accept()],
            vec![iifname("br1"), oifname_in_set("bridges"), drop()],
            vec![iifname("br1"), drop()],
            vec![oifname("br1"), drop()],
        ];
        assert_eq!(fwd, expected.iter().collect::<Vec<_>>());
    }

    fn state_after_setup(id: &str, bridge: &str) -> TableState {
        let mut state = TableState::default();
        for own in Own::ALL {
            state.chains.insert(chain_name(id, own));
        }
        state.map_jumps.push(MapJump {
            map: MAP_BRIDGE_FWD.into(),
            key: json!(bridge),
            target: chain_name(id, Own::Fwd),
        });
        state
            .set_elements
            .entry(SET_BRIDGES.into())
            .or_default()
            .push(json!(bridge));
        state.rules.extend([
            rule(POSTROUTING, 1, &[&chain_name(id, Own::Nat)], None),
            rule(PREROUTING, 2, &[&chain_name(id, Own::Dnat)], None),
            rule(OUTPUT, 3, &[&chain_name(id, Own::Dnat)], None),
        ]);
        state
    }

    #[test]
    fn second_setup_adds_no_second_jump() {
        let n = net("n1", "br1", &["10.88.0.0/16"], false);
        let batch = plan_setup("t", &n, &state_after_setup("n1", "br1")).unwrap();
        for base in [POSTROUTING, PREROUTING, OUTPUT] {
            assert!(added_rules(&batch, base).is_empty(), "{base}");
        }
        assert!(batch.commands().iter().all(|c| c.get("delete").is_none()));
        // Own filter/nat chains are refilled from scratch; the dnat chain keeps its
        // port forwards.
        assert_eq!(
            names(&batch, "flush", "chain"),
            ["input", "forward", "nw-n1-fwd", "nw-n1-nat"]
        );
    }

    #[test]
    fn setup_removes_duplicate_jumps() {
        let n = net("n1", "br1", &["10.88.0.0/16"], false);
        let mut state = state_after_setup("n1", "br1");
        state
            .rules
            .push(rule(POSTROUTING, 99, &["nw-n1-nat"], None));
        let batch = plan_setup("t", &n, &state).unwrap();
        assert_eq!(
            cmds(&batch, "delete", "rule"),
            [&json!({"family": "inet", "table": "t", "chain": "postrouting", "handle": 99})]
        );
    }

    #[test]
    fn setup_with_new_bridge_name_drops_old_key() {
        let n = net("n1", "br2", &["10.88.0.0/16"], false);
        let batch = plan_setup("t", &n, &state_after_setup("n1", "br1")).unwrap();
        let deleted: Vec<_> = cmds(&batch, "delete", "element")
            .iter()
            .map(|b| (b["name"].clone(), b["elem"].clone()))
            .collect();
        assert_eq!(
            deleted,
            [
                (json!(MAP_BRIDGE_FWD), json!(["br1"])),
                (json!(SET_BRIDGES), json!(["br1"]))
            ]
        );
    }

    #[test]
    fn setup_refuses_bridge_of_another_network() {
        let n = net("n2", "br1", &["10.89.0.0/16"], false);
        let err = plan_setup("t", &n, &state_after_setup("n1", "br1")).unwrap_err();
        assert_eq!(err.other, "n1");
    }

    #[test]
    fn teardown_touches_only_its_network() {
        let mut state = state_after_setup("n1", "br1");
        let other = state_after_setup("n2", "br2");
        state.chains.extend(other.chains);
        state.map_jumps.extend(other.map_jumps);
        state
            .set_elements
            .get_mut(SET_BRIDGES)
            .unwrap()
            .push(json!("br2"));
        state.rules.extend([
            rule(POSTROUTING, 11, &["nw-n2-nat"], None),
            rule("nw-n1-dnat", 20, &[], Some("c1")),
            rule("nw-n2-fwd", 21, &[], None),
        ]);
        let batch = plan_teardown("t", "n1", &state).unwrap();
        let text = batch.to_json();
        assert!(!text.contains("n2") && !text.contains("br2"), "{text}");
        assert_eq!(cmds(&batch, "delete", "element").len(), 2);
        let handles: Vec<_> = cmds(&batch, "delete", "rule")
            .iter()
            .map(|b| b["handle"].as_u64().unwrap())
            .collect();
        assert_eq!(handles, [1, 2, 3]);
        assert_eq!(
            names(&batch, "delete", "chain"),
            ["nw-n1-dnat", "nw-n1-fwd", "nw-n1-nat"]
        );
        // References go before the chains they point to.
        let first_chain = batch
            .commands()
            .iter()
            .position(|c| c.get("delete").and_then(|d| d.get("chain")).is_some())
            .unwrap();
        assert_eq!(first_chain, 5);
        assert!(plan_teardown("t", "n3", &state).is_none());
    }

    #[test]
    fn port_forwards_replace_the_containers_own() {
        let mut state = state_after_setup("n1", "br1");
        state.rules.extend([
            rule("nw-n1-dnat", 40, &[], Some("c1")),
            rule("nw-n1-dnat", 41, &[], Some("c2")),
        ]);
        let forwards = [
            PortForward {
                host_ip: None,
                host_port: 8080,
                container_ip: "10.88.0.2".parse().unwrap(),
                container_port: 80,
                protocol: Protocol::Tcp,
            },
            PortForward {
                host_ip: Some("fd00::1".parse().unwrap()),
                host_port: 53,
                container_ip: "fd00::2".parse().unwrap(),
                container_port: 5353,
                protocol: Protocol::Udp,
            },
            PortForward {
                host_ip: Some("0.0.0.0".parse().unwrap()),
                host_port: 9000,
                container_ip: "10.88.0.2".parse().unwrap(),
                container_port: 9000,
                protocol: Protocol::Udp,
            },
        ];
        let batch = plan_port_forwards("t", "n1", "c1", &forwards, &state);
        let deleted: Vec<_> = cmds(&batch, "delete", "rule")
            .iter()
            .map(|b| b["handle"].clone())
            .collect();
        assert_eq!(deleted, [json!(40)]);
        let added = cmds(&batch, "add", "rule");
        assert!(added
            .iter()
            .all(|b| b["comment"] == "c1" && b["chain"] == "nw-n1-dnat"));
        let exprs: Vec<_> = added.iter().map(|b| b["expr"].clone()).collect();
        assert_eq!(
            exprs,
            [
                json!([
                    nfproto(true),
                    dport(Protocol::Tcp, 8080),
                    dnat("10.88.0.2".parse().unwrap(), 80)
                ]),
                json!([
                    daddr_is("fd00::1".parse().unwrap()),
                    dport(Protocol::Udp, 53),
                    dnat("fd00::2".parse().unwrap(), 5353)
                ]),
                json!([
                    nfproto(true),
                    dport(Protocol::Udp, 9000),
                    dnat("10.88.0.2".parse().unwrap(), 9000)
                ]),
            ]
        );
        assert_eq!(
            exprs[1][2],
            json!({"dnat": {"family": "ip6", "addr": "fd00::2", "port": 5353}})
        );

        let removal = plan_remove_port_forwards("t", "n1", "c2", &state).unwrap();
        let handles: Vec<_> = cmds(&removal, "delete", "rule")
            .iter()
            .map(|b| b["handle"].clone())
            .collect();
        assert_eq!(handles, [json!(41)]);
        assert_eq!(removal.commands().len(), 1);
        assert!(plan_remove_port_forwards("t", "n1", "c3", &state).is_none());
        assert!(has_network(&state, "n1") && !has_network(&state, "n2"));
    }

    #[test]
    fn teardown_all_tolerates_missing_table() {
        assert_eq!(
            plan_teardown_all("t").commands(),
            [
                json!({"add": {"table": {"family": "inet", "name": "t"}}}),
                json!({"delete": {"table": {"family": "inet", "name": "t"}}})
            ]
        );
    }

    #[test]
    fn networks_are_listed_once_sorted() {
        let mut state = state_after_setup("n2", "br2");
        state
            .chains
            .extend(state_after_setup("a-dnat", "br1").chains);
        state.chains.insert("forward".into());
        state.chains.insert("nw-orphan-nat".into());
        assert_eq!(networks(&state), ["a-dnat", "n2", "orphan"]);
    }
}
