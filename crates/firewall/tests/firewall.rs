//! The firewall against real nftables, each test in its own network namespace, checked
//! through `nft -j list table`.

mod common;

use common::*;
use container_firewall::{Error, Firewall, PortForward, Protocol};
use serde_json::{json, Value};

fn isolate() -> container_testkit::Isolated {
    container_testkit::isolate().expect("isolate test in private namespaces")
}

fn tcp(host_ip: Option<&str>, host_port: u16, ip: &str, port: u16) -> PortForward {
    PortForward {
        host_ip: host_ip.map(|h| h.parse().expect("host ip")),
        host_port,
        container_ip: ip.parse().expect("container ip"),
        container_port: port,
        protocol: Protocol::Tcp,
    }
}

fn rule_jumping_to(objs: &[Value], chain: &str, target: &str) -> usize {
    exprs(objs, chain)
        .iter()
        .filter(|e| contains(e, &json!({"jump": {"target": target}})))
        .count()
}

/// Everything of the table except what `network` owns, for "nothing else changed".
fn without_network(objs: &[Value], network: &str, bridge: &str) -> Vec<Value> {
    let prefix = format!("nw-{network}-");
    objs.iter()
        .filter(|o| {
            let text = o.to_string();
            // Sets are compared separately: their element lists legitimately change.
            o.get("set").is_none()
                && o.get("map").is_none()
                && !text.contains(&format!("\"{prefix}"))
                && !text.contains(&format!("\"{bridge}\""))
        })
        .cloned()
        .collect()
}

#[test]
fn setup_creates_chains_and_rules() {
    let _ns = isolate();
    let fw = firewall("setup");
    fw.setup_network(&network(
        "n1",
        "br1",
        &["10.88.0.0/16", "fd00:88::/64"],
        false,
    ))
    .expect("setup");

    let objs = list_some(&fw);
    assert_eq!(
        chains(&objs),
        [
            "forward",
            "input",
            "nw-n1-dnat",
            "nw-n1-fwd",
            "nw-n1-nat",
            "output",
            "postrouting",
            "prerouting"
        ]
    );
    for (name, kind, hook, prio) in [
        ("input", "filter", "input", 0),
        ("forward", "filter", "forward", 0),
        ("postrouting", "nat", "postrouting", 100),
        ("prerouting", "nat", "prerouting", -100),
        ("output", "nat", "output", -100),
    ] {
        let c = chain(&objs, name).expect(name);
        assert_eq!(
            (c["type"].as_str(), c["hook"].as_str()),
            (Some(kind), Some(hook))
        );
        assert_eq!(c["prio"], prio, "{name}");
        assert_eq!(c["policy"], "accept", "{name}");
    }
    assert_eq!(
        exprs(&objs, "forward"),
        [
            json!([{"vmap": {"key": {"meta": {"key": "iifname"}}, "data": "@bridge-fwd"}}]),
            json!([{"vmap": {"key": {"meta": {"key": "oifname"}}, "data": "@bridge-fwd"}}]),
        ]
    );
    assert_eq!(
        elements(&objs, "bridge-fwd"),
        [json!(["br1", {"jump": {"target": "nw-n1-fwd"}}])]
    );
    assert_eq!(elements(&objs, "bridges"), [json!("br1")]);
    assert_eq!(rule_jumping_to(&objs, "postrouting", "nw-n1-nat"), 1);
    for base in ["prerouting", "output"] {
        let e = exprs(&objs, base);
        assert_eq!(e.len(), 1);
        assert!(contains(
            &e[0],
            &json!({"fib": {"result": "type", "flags": ["daddr"]}})
        ));
        assert!(contains(&e[0], &json!({"jump": {"target": "nw-n1-dnat"}})));
    }
    let fwd = exprs(&objs, "nw-n1-fwd");
    assert_eq!(fwd.len(), 6, "{fwd:#?}");
    // Egress from the bridge, and only established/related or published traffic back.
    assert!(fwd.contains(&json!([
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "br1"}},
        {"accept": null}
    ])));
    assert!(fwd
        .iter()
        .any(|e| contains(e, &json!({"ct": {"key": "state"}}))
            && contains(e, &json!(["established", "related"]))));
    assert_eq!(
        fwd.last(),
        Some(&json!([
            {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "br1"}},
            {"drop": null}
        ]))
    );
    assert!(exprs(&objs, "nw-n1-dnat").is_empty());
    assert_eq!(fw.list_networks().expect("list"), ["n1"]);
}

#[test]
fn masquerade_only_for_non_internal_networks() {
    let _ns = isolate();
    let fw = firewall("masq");
    fw.setup_network(&network(
        "ext",
        "br-ext",
        &["10.88.0.0/16", "fd00:88::/64"],
        false,
    ))
    .expect("setup ext");
    fw.setup_network(&network("int", "br-int", &["10.89.0.0/16"], true))
        .expect("setup int");

    let objs = list_some(&fw);
    let masq_v4 = json!([
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                   "right": {"prefix": {"addr": "10.88.0.0", "len": 16}}}},
        {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "br-ext"}},
        {"masquerade": null}
    ]);
    let nat = exprs(&objs, "nw-ext-nat");
    assert!(nat.contains(&masq_v4), "{nat:#?}");
    assert!(nat.iter().any(
        |e| contains(e, &json!({"prefix": {"addr": "fd00:88::", "len": 64}}))
            && contains(e, &json!({"masquerade": null}))
    ));

    assert!(has_masquerade(&objs, "nw-ext-nat"));
    assert!(!has_masquerade(&objs, "nw-int-nat"));
    assert!(
        !mentions(&objs, "10.89.0.0"),
        "internal subnet must not be masqueraded"
    );
    // Internal: everything leaving the bridge for elsewhere is dropped.
    let fwd = exprs(&objs, "nw-int-fwd");
    assert!(fwd.contains(&json!([
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "br-int"}},
        {"drop": null}
    ])));
    assert!(!fwd
        .iter()
        .any(|e| contains(e, &json!({"ct": {"key": "state"}}))));
}

#[test]
fn isolation_between_two_networks() {
    let _ns = isolate();
    let fw = firewall("iso");
    fw.setup_network(&network("a", "br-a", &["10.1.0.0/24"], false))
        .expect("setup a");
    fw.setup_network(&network("b", "br-b", &["10.2.0.0/24"], true))
        .expect("setup b");

    let objs = list_some(&fw);
    let mut bridges = elements(&objs, "bridges");
    bridges.sort_by_key(Value::to_string);
    assert_eq!(bridges, [json!("br-a"), json!("br-b")]);
    for (id, br) in [("a", "br-a"), ("b", "br-b")] {
        let fwd = exprs(&objs, &format!("nw-{id}-fwd"));
        let own = json!([
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": br}},
            {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": br}},
            {"accept": null}
        ]);
        let isolate = json!([
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": br}},
            {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "@bridges"}},
            {"drop": null}
        ]);
        // Own-bridge traffic is let through before the isolation drop sees it.
        assert_eq!(fwd[0], own, "{id}");
        assert_eq!(fwd[1], isolate, "{id}");
    }
    let mut dispatch = elements(&objs, "bridge-fwd");
    dispatch.sort_by_key(Value::to_string);
    assert_eq!(
        dispatch,
        [
            json!(["br-a", {"jump": {"target": "nw-a-fwd"}}]),
            json!(["br-b", {"jump": {"target": "nw-b-fwd"}}])
        ]
    );
}

#[test]
fn teardown_removes_only_that_network() {
    let _ns = isolate();
    let fw = firewall("teardown");
    fw.setup_network(&network("n1", "br1", &["10.1.0.0/24"], false))
        .expect("setup n1");
    fw.setup_network(&network(
        "n2",
        "br2",
        &["10.2.0.0/24", "fd00:2::/64"],
        false,
    ))
    .expect("setup n2");
    fw.add_port_forwards("n1", "c1", &[tcp(None, 8080, "10.1.0.2", 80)])
        .expect("pf n1");
    fw.add_port_forwards("n2", "c2", &[tcp(None, 8081, "10.2.0.2", 80)])
        .expect("pf n2");
    let before = list_some(&fw);

    fw.teardown_network("n1").expect("teardown n1");

    let after = list_some(&fw);
    assert!(!mentions(&after, "nw-n1-"), "{after:#?}");
    assert!(!mentions(&after, "\"br1\""), "{after:#?}");
    assert!(!mentions(&after, "10.1.0."), "{after:#?}");
    // Everything else, handles included, is exactly as it was.
    assert_eq!(
        without_network(&before, "n1", "br1"),
        after
            .iter()
            .filter(|o| o.get("set").is_none() && o.get("map").is_none())
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(elements(&after, "bridges"), [json!("br2")]);
    assert_eq!(
        elements(&after, "bridge-fwd"),
        [json!(["br2", {"jump": {"target": "nw-n2-fwd"}}])]
    );
    assert_eq!(exprs(&after, "nw-n2-dnat").len(), 1);
    assert_eq!(fw.list_networks().expect("list"), ["n2"]);

    // Unknown, already removed, and never-created-table cases are all Ok.
    fw.teardown_network("n1").expect("teardown again");
    fw.teardown_network("never").expect("teardown unknown");
    assert_eq!(list_some(&fw), after);
    let empty = firewall("no-table");
    empty
        .teardown_network("n1")
        .expect("teardown without table");
    assert!(list(&empty).is_none(), "teardown must not create the table");
    assert!(empty.list_networks().expect("list").is_empty());
}

#[test]
fn setup_is_idempotent() {
    let _ns = isolate();
    let fw = firewall("idem");
    let n1 = network("n1", "br1", &["10.1.0.0/24", "fd00:1::/64"], false);
    fw.setup_network(&n1).expect("first setup");
    fw.add_port_forwards("n1", "c1", &[tcp(None, 8080, "10.1.0.2", 80)])
        .expect("pf");
    let first = list_some(&fw);
    fw.setup_network(&n1).expect("second setup");
    fw.setup_network(&n1).expect("third setup");
    let third = list_some(&fw);

    assert_eq!(chains(&first), chains(&third));
    for c in chains(&first) {
        assert_eq!(exprs(&first, &c), exprs(&third, &c), "chain {c}");
    }
    assert_eq!(elements(&third, "bridges"), [json!("br1")]);
    assert_eq!(elements(&third, "bridge-fwd").len(), 1);
    // The port forward survived, untouched (same handle).
    assert_eq!(rules(&first, "nw-n1-dnat"), rules(&third, "nw-n1-dnat"));

    // Re-setup with changed settings replaces rather than accumulates.
    fw.setup_network(&network("n1", "br1b", &["10.1.0.0/24"], true))
        .expect("setup changed");
    let changed = list_some(&fw);
    assert!(!has_masquerade(&changed, "nw-n1-nat"));
    assert_eq!(elements(&changed, "bridges"), [json!("br1b")]);
    assert_eq!(
        elements(&changed, "bridge-fwd"),
        [json!(["br1b", {"jump": {"target": "nw-n1-fwd"}}])]
    );
    assert!(!mentions(&changed, "\"br1\""));
    assert_eq!(rule_jumping_to(&changed, "postrouting", "nw-n1-nat"), 1);
    assert_eq!(rule_jumping_to(&changed, "prerouting", "nw-n1-dnat"), 1);
}

#[test]
fn port_forwards_add_and_remove() {
    let _ns = isolate();
    let fw = firewall("pf");
    fw.setup_network(&network(
        "n1",
        "br1",
        &["10.1.0.0/24", "fd00:1::/64"],
        false,
    ))
    .expect("setup");
    fw.add_port_forwards(
        "n1",
        "c1",
        &[
            tcp(None, 8080, "10.1.0.2", 80),
            tcp(Some("127.0.0.1"), 8443, "10.1.0.2", 443),
            PortForward {
                protocol: Protocol::Udp,
                ..tcp(Some("fd00:1::1"), 5353, "fd00:1::2", 53)
            },
        ],
    )
    .expect("add c1");
    fw.add_port_forwards("n1", "c2", &[tcp(None, 9090, "10.1.0.3", 90)])
        .expect("add c2");

    let objs = list_some(&fw);
    let dnat = rules(&objs, "nw-n1-dnat");
    let comments: Vec<_> = dnat.iter().map(|r| r["comment"].clone()).collect();
    assert_eq!(
        comments,
        [json!("c1"), json!("c1"), json!("c1"), json!("c2")]
    );
    assert!(contains(
        &dnat[0]["expr"],
        &json!({"dnat": {"family": "ip", "addr": "10.1.0.2", "port": 80}})
    ));
    assert!(contains(&dnat[0]["expr"], &json!(8080)));
    assert!(contains(&dnat[1]["expr"], &json!("127.0.0.1")));
    assert!(contains(
        &dnat[2]["expr"],
        &json!({"payload": {"protocol": "udp", "field": "dport"}})
    ));
    assert!(contains(
        &dnat[2]["expr"],
        &json!({"dnat": {"family": "ip6", "addr": "fd00:1::2", "port": 53}})
    ));

    // Adding again replaces c1's set instead of stacking a second copy.
    fw.add_port_forwards("n1", "c1", &[tcp(None, 8000, "10.1.0.2", 8000)])
        .expect("replace c1");
    let objs = list_some(&fw);
    let dnat = rules(&objs, "nw-n1-dnat");
    assert_eq!(dnat.len(), 2);
    assert_eq!(dnat[0]["comment"], "c2");
    assert!(contains(&dnat[1]["expr"], &json!(8000)));

    fw.remove_port_forwards("n1", "c1").expect("remove c1");
    let objs = list_some(&fw);
    let dnat = rules(&objs, "nw-n1-dnat");
    assert_eq!(dnat.len(), 1);
    assert_eq!(dnat[0]["comment"], "c2");
    fw.remove_port_forwards("n1", "c1")
        .expect("remove c1 again");
    fw.remove_port_forwards("other", "c2")
        .expect("remove on unknown network");
    assert_eq!(rules(&list_some(&fw), "nw-n1-dnat").len(), 1);

    let err = fw
        .add_port_forwards("nope", "c1", &[tcp(None, 1, "10.9.0.2", 1)])
        .expect_err("network not set up");
    assert!(matches!(err, Error::NotSetUp { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "network nope: nftables add port forwards of container c1: network is not set up"
    );
}

#[test]
fn bad_input_is_rejected_before_any_change() {
    let _ns = isolate();
    let fw = firewall("bad");

    // Nothing at all exists yet: a refused setup must not even create the table.
    for bad in [
        network("Bad", "br1", &["10.1.0.0/24"], false),
        network("", "br1", &["10.1.0.0/24"], false),
        network(&"n".repeat(64), "br1", &["10.1.0.0/24"], false),
        network("n1", "bridge-name-too-long", &["10.1.0.0/24"], false),
        network("n1", "br 1", &["10.1.0.0/24"], false),
        network("n1", "br1", &[], false),
    ] {
        let err = fw.setup_network(&bad).expect_err("bad network refused");
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        assert!(list(&fw).is_none(), "{bad:?} created the table");
    }

    fw.setup_network(&network("n1", "br1", &["10.1.0.0/24"], false))
        .expect("setup");
    fw.add_port_forwards("n1", "c1", &[tcp(None, 8080, "10.1.0.2", 80)])
        .expect("pf");
    let before = list_some(&fw);

    let err = fw
        .setup_network(&network("n1", "0123456789abcdef", &["10.1.0.0/24"], false))
        .expect_err("16-byte ifname");
    assert_eq!(
        err.to_string(),
        "network n1: invalid bridge name \"0123456789abcdef\": must be at most 15 bytes"
    );
    let err = fw
        .setup_network(&network("n2", "br1", &["10.2.0.0/24"], false))
        .expect_err("bridge of another network");
    assert!(
        matches!(err, Error::BridgeInUse { ref other, .. } if other == "n1"),
        "{err}"
    );
    for (network_id, container, forwards) in [
        ("n1", "c1", vec![tcp(None, 0, "10.1.0.2", 80)]),
        ("n1", "c1", vec![tcp(None, 80, "10.1.0.2", 0)]),
        ("n1", "c1", vec![tcp(Some("::1"), 80, "10.1.0.2", 80)]),
        (
            "n1",
            "c1",
            vec![tcp(None, 80, "10.1.0.2", 80), tcp(None, 80, "10.1.0.3", 80)],
        ),
        ("n1", "", vec![tcp(None, 80, "10.1.0.2", 80)]),
        ("n1", "c 1", vec![tcp(None, 80, "10.1.0.2", 80)]),
        ("N1", "c1", vec![tcp(None, 80, "10.1.0.2", 80)]),
    ] {
        let err = fw
            .add_port_forwards(network_id, container, &forwards)
            .expect_err("bad port forward refused");
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
    }
    for bad_id in ["../n1", "N1", ""] {
        assert!(matches!(
            fw.teardown_network(bad_id),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            fw.remove_port_forwards(bad_id, "c1"),
            Err(Error::Invalid { .. })
        ));
    }
    assert!(matches!(
        fw.remove_port_forwards("n1", "a\nb"),
        Err(Error::Invalid { .. })
    ));
    assert!(Firewall::with_table("bad name").is_err());

    assert_eq!(list_some(&fw), before, "a refused call changed the table");
}

#[test]
fn failed_batch_leaves_nothing_half_applied() {
    let _ns = isolate();
    let fw = firewall("atomic");
    // A base chain someone else created with another priority makes the batch fail
    // at the kernel, after nft accepted its syntax.
    let table = fw.table().to_string();
    let out = nft(&["add", "table", "inet", &table]);
    assert!(out.status.success());
    let out = nft(&[
        "add",
        "chain",
        "inet",
        &table,
        "forward",
        "{ type filter hook forward priority 10; }",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = list_some(&fw);

    let err = fw
        .setup_network(&network("n1", "br1", &["10.1.0.0/24"], false))
        .expect_err("conflicting base chain");
    let text = err.to_string();
    assert!(matches!(err, Error::Nft { .. }), "{text}");
    assert!(text.starts_with("network n1: nftables setup: "), "{text}");
    assert!(text.contains("Operation not supported"), "{text}");
    assert!(!text.contains("internal:0:0-0"), "{text}");
    assert_eq!(list_some(&fw), before, "setup left something behind");
    assert!(fw.list_networks().expect("list").is_empty());
}

#[test]
fn missing_nft_binary_is_reported() {
    let _ns = isolate();
    let fw = firewall("nonft").with_nft_program("/nonexistent/nft");
    let err = fw
        .setup_network(&network("n1", "br1", &["10.1.0.0/24"], false))
        .expect_err("no nft");
    assert!(matches!(err, Error::Spawn { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with("network n1: nftables setup: run /nonexistent/nft: "));
}

#[test]
fn list_networks_finds_leftover_chains_and_teardown_all_clears() {
    let _ns = isolate();
    let fw = firewall("list");
    assert!(fw.list_networks().expect("list without table").is_empty());
    fw.setup_network(&network("b.2", "br2", &["10.2.0.0/24"], false))
        .expect("setup b.2");
    fw.setup_network(&network("a-nat", "br1", &["10.1.0.0/24"], true))
        .expect("setup a-nat");
    assert_eq!(fw.list_networks().expect("list"), ["a-nat", "b.2"]);

    // Another table's chains are not ours.
    let other = firewall("list-other");
    other
        .setup_network(&network("zz", "br9", &["10.9.0.0/24"], false))
        .expect("setup other");
    assert_eq!(fw.list_networks().expect("list"), ["a-nat", "b.2"]);

    fw.teardown_all().expect("teardown all");
    assert!(list(&fw).is_none());
    assert!(fw.list_networks().expect("list").is_empty());
    fw.teardown_all().expect("teardown all again");
    assert_eq!(other.list_networks().expect("list other"), ["zz"]);
}
