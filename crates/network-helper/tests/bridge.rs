//! The bridge plugin against a real kernel, inside a private network namespace.

mod common;

use std::net::IpAddr;

use common::*;
use container_protocol::network::{NetworkRequest, NetworkResponse, PluginData};

#[test]
fn setup_is_idempotent_and_teardown_removes_everything() {
    let env = Env::new();
    let helper = env.helper(&config(
        "n1",
        "bridge",
        Some("10.4.0.0/24"),
        &[("mtu", "1400")],
    ));

    env.call(&helper, NetworkRequest::Setup).expect("setup");
    assert_eq!(
        link_addresses("cbr-n1").expect("bridge exists"),
        vec!["10.4.0.1/24"]
    );
    let link = json("ip", &["-j", "-d", "link", "show", "dev", "cbr-n1"]).unwrap();
    assert_eq!(link[0]["linkinfo"]["info_kind"], "bridge");
    assert_eq!(link[0]["mtu"], 1400);
    assert!(link[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "UP"));
    let chains = nft_chains();
    for chain in ["nw-n1-fwd", "nw-n1-nat", "nw-n1-dnat"] {
        assert!(
            chains.iter().any(|c| c == chain),
            "{chain} missing from {chains:?}"
        );
    }
    assert!(nft_ruleset().contains("masquerade"), "{}", nft_ruleset());
    let sysctl = |k: &str| std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap();
    assert_eq!(sysctl("net/ipv4/conf/cbr-n1/route_localnet").trim(), "1");
    assert_eq!(sysctl("net/ipv4/ip_forward").trim(), "1");

    // Again: nothing doubled, nothing fails.
    env.call(&helper, NetworkRequest::Setup)
        .expect("second setup");
    assert_eq!(link_addresses("cbr-n1").unwrap(), vec!["10.4.0.1/24"]);
    assert_eq!(
        nft_chains()
            .iter()
            .filter(|c| c.as_str() == "nw-n1-fwd")
            .count(),
        1
    );

    let NetworkResponse::State(state) = env.call(&helper, NetworkRequest::State).unwrap() else {
        panic!("state");
    };
    assert_eq!(state.plugin.as_str(), "bridge");
    assert_eq!(state.link.as_deref(), Some("cbr-n1"));
    assert_eq!(state.link_up, Some(true));

    allocate(&env, &helper, attachment("n1", "c1", "eth0")).unwrap();
    let ipam_dir = env.paths().ipam_network("n1").unwrap();
    assert!(ipam_dir.join("10.4.0.2").exists());

    env.call(&helper, NetworkRequest::Teardown)
        .expect("teardown");
    assert!(link_addresses("cbr-n1").is_none(), "bridge still there");
    assert!(
        !nft_chains().iter().any(|c| c.contains("n1")),
        "{:?}",
        nft_chains()
    );
    assert!(!ipam_dir.exists(), "ipam dir still there");
    // Teardown of what is gone is fine too.
    env.call(&helper, NetworkRequest::Teardown)
        .expect("second teardown");
}

#[test]
fn internal_network_has_no_masquerade_and_no_route_out() {
    let env = Env::new();
    let mut cfg = config(
        "int1",
        "bridge",
        Some("10.5.0.0/24"),
        &[("bridge", "brint")],
    );
    cfg.internal = true;
    let helper = env.helper(&cfg);
    env.call(&helper, NetworkRequest::Setup).expect("setup");
    assert_eq!(link_addresses("brint").unwrap(), vec!["10.5.0.1/24"]);
    assert!(!nft_ruleset().contains("masquerade"), "{}", nft_ruleset());
    let a = allocate(&env, &helper, attachment("int1", "c1", "eth0")).unwrap();
    assert!(a.routes.is_empty(), "{a:?}");
    assert!(a.gateways.is_empty(), "{a:?}");
    assert_eq!(
        a.data,
        PluginData::Bridge {
            bridge: "brint".into()
        }
    );
}

#[test]
fn allocation_round_robin_release_and_contents() {
    let env = Env::new();
    let helper = env.helper(&config(
        "n1",
        "bridge",
        Some("10.4.0.0/29"),
        &[("mtu", "1450")],
    ));
    env.call(&helper, NetworkRequest::Setup).unwrap();

    let a1 = allocate(&env, &helper, attachment("n1", "c1", "eth0")).unwrap();
    assert_eq!(a1.addresses, vec!["10.4.0.2/29".parse().unwrap()]);
    assert_eq!(a1.gateways, vec!["10.4.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(a1.routes.len(), 1);
    assert_eq!(a1.routes[0].dest, "0.0.0.0/0".parse().unwrap());
    assert_eq!(a1.routes[0].gateway, Some("10.4.0.1".parse().unwrap()));
    assert_eq!(a1.plugin().as_str(), "bridge");
    assert_eq!(
        a1.data,
        PluginData::Bridge {
            bridge: "cbr-n1".into()
        }
    );
    assert_eq!(a1.mtu, Some(1450));
    let mac = a1.mac.expect("a MAC");
    assert_eq!(mac[0], 0x02, "locally administered unicast");
    // The network's own name server, on its gateway (issue 13).
    assert_eq!(a1.dns, vec!["10.4.0.1".parse::<IpAddr>().unwrap()]);

    let a2 = allocate(&env, &helper, attachment("n1", "c2", "eth0")).unwrap();
    assert_eq!(a2.addresses, vec!["10.4.0.3/29".parse().unwrap()]);
    assert_ne!(a2.mac, a1.mac);

    let NetworkResponse::Released(ips) = env
        .call(
            &helper,
            NetworkRequest::Release {
                container_id: "c1".into(),
                ifname: "eth0".into(),
                netns: None,
            },
        )
        .unwrap()
    else {
        panic!("release");
    };
    assert_eq!(ips, vec!["10.4.0.2".parse::<IpAddr>().unwrap()]);
    // Idempotent.
    let again = env.call(
        &helper,
        NetworkRequest::Release {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: None,
        },
    );
    assert!(matches!(again, Ok(NetworkResponse::Released(v)) if v.is_empty()));

    // Round robin: the freed .2 is not reused before the range wraps.
    let mut att = attachment("n1", "c3", "eth0");
    att.mac = Some([0x02, 1, 2, 3, 4, 5]);
    let a3 = allocate(&env, &helper, att).unwrap();
    assert_eq!(a3.addresses, vec!["10.4.0.4/29".parse().unwrap()]);
    assert_eq!(a3.mac, Some([0x02, 1, 2, 3, 4, 5]), "requested MAC kept");

    let NetworkResponse::State(state) = env.call(&helper, NetworkRequest::State).unwrap() else {
        panic!("state");
    };
    let held: Vec<(String, String)> = state
        .reservations
        .iter()
        .map(|r| (r.ip.to_string(), r.container_id.clone()))
        .collect();
    assert_eq!(
        held,
        vec![
            ("10.4.0.3".into(), "c2".into()),
            ("10.4.0.4".into(), "c3".into())
        ]
    );
}

#[test]
fn exhaustion_of_a_slash_30() {
    let env = Env::new();
    let helper = env.helper(&config("n1", "bridge", Some("10.4.0.0/30"), &[]));
    env.call(&helper, NetworkRequest::Setup).unwrap();
    let a = allocate(&env, &helper, attachment("n1", "c1", "eth0")).unwrap();
    assert_eq!(a.addresses, vec!["10.4.0.2/30".parse().unwrap()]);
    let err = allocate(&env, &helper, attachment("n1", "c2", "eth0")).unwrap_err();
    assert_eq!(
        err,
        "network n1: allocate: no free address left in 10.4.0.0/30"
    );
}

#[test]
fn static_addresses_and_conflicts() {
    let env = Env::new();
    let helper = env.helper(&config("n1", "bridge", Some("10.4.0.0/24"), &[]));
    env.call(&helper, NetworkRequest::Setup).unwrap();

    let mut att = attachment("n1", "c1", "eth0");
    att.ipv4 = Some("10.4.0.50".parse().unwrap());
    let a = allocate(&env, &helper, att).unwrap();
    assert_eq!(a.addresses, vec!["10.4.0.50/24".parse().unwrap()]);

    let mut att = attachment("n1", "c2", "eth0");
    att.ipv4 = Some("10.4.0.50".parse().unwrap());
    let err = allocate(&env, &helper, att).unwrap_err();
    assert!(err.starts_with("network n1: allocate: "), "{err}");
    assert!(
        err.contains("10.4.0.50 is already reserved") && err.contains("c1"),
        "{err}"
    );

    let mut att = attachment("n1", "c3", "eth0");
    att.ipv4 = Some("10.4.0.1".parse().unwrap());
    let err = allocate(&env, &helper, att).unwrap_err();
    assert!(err.contains("gateway"), "{err}");

    let mut att = attachment("n1", "c4", "eth0");
    att.ipv4 = Some("10.9.0.5".parse().unwrap());
    let err = allocate(&env, &helper, att).unwrap_err();
    assert!(err.contains("outside every configured range"), "{err}");

    // A second interface of c1 on the same network is a separate attachment.
    let a = allocate(&env, &helper, attachment("n1", "c1", "eth1")).unwrap();
    assert_eq!(a.addresses.len(), 1);
    // The same one twice is refused.
    let err = allocate(&env, &helper, attachment("n1", "c1", "eth1")).unwrap_err();
    assert!(err.contains("already holds"), "{err}");
}

#[test]
fn attachment_for_another_network_is_refused() {
    let env = Env::new();
    let helper = env.helper(&config("n1", "bridge", Some("10.4.0.0/24"), &[]));
    let err = allocate(&env, &helper, attachment("n2", "c1", "eth0")).unwrap_err();
    assert!(
        err.starts_with("network n1: allocate: ") && err.contains("\"n2\""),
        "{err}"
    );
    assert!(!env
        .paths()
        .ipam_network("n1")
        .unwrap()
        .join("10.4.0.2")
        .exists());
}

#[test]
fn gc_releases_stale_reservation_files() {
    let env = Env::new();
    let helper = env.helper(&config("n1", "bridge", Some("10.4.0.0/24"), &[]));
    env.call(&helper, NetworkRequest::Setup).unwrap();
    allocate(&env, &helper, attachment("n1", "live1", "eth0")).unwrap();
    // What host-local, or a helper that died mid-way, leaves behind.
    let dir = env.paths().ipam_network("n1").unwrap();
    std::fs::write(dir.join("10.4.0.77"), "gone1\r\neth0").unwrap();
    std::fs::write(dir.join("10.4.0.78"), "gone2").unwrap();

    let NetworkResponse::Collected(released) = env
        .call(
            &helper,
            NetworkRequest::Gc {
                live: vec![("live1".into(), "eth0".into())],
            },
        )
        .unwrap()
    else {
        panic!("gc");
    };
    let mut got: Vec<(String, String)> = released
        .iter()
        .map(|r| (r.ip.to_string(), r.container_id.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("10.4.0.77".into(), "gone1".into()),
            ("10.4.0.78".into(), "gone2".into())
        ]
    );
    assert!(!dir.join("10.4.0.77").exists() && !dir.join("10.4.0.78").exists());
    assert!(dir.join("10.4.0.2").exists(), "live reservation kept");

    // Nothing left to collect.
    let again = env.call(
        &helper,
        NetworkRequest::Gc {
            live: vec![("live1".into(), "eth0".into())],
        },
    );
    assert!(matches!(again, Ok(NetworkResponse::Collected(v)) if v.is_empty()));
}

#[test]
fn concurrent_allocations_never_share_an_address() {
    let env = Env::new();
    let helper = env.helper(&config("n1", "bridge", Some("10.4.0.0/24"), &[]));
    let results = env.rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..20 {
            let h = helper.clone();
            tasks.push(tokio::spawn(async move {
                h.dispatch(NetworkRequest::Allocate(attachment(
                    "n1",
                    &format!("c{i}"),
                    "eth0",
                )))
                .await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let mut ips: Vec<String> = results
        .into_iter()
        .map(|r| match r {
            Ok(NetworkResponse::Allocated(a)) => a.addresses[0].to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20);
}

#[test]
fn dual_stack_bridge() {
    let env = Env::new();
    let mut cfg = config("ds", "bridge", Some("10.6.0.0/24"), &[]);
    cfg.subnet_v6 = Some("fd00:6::/64".parse().unwrap());
    let helper = env.helper(&cfg);
    env.call(&helper, NetworkRequest::Setup).expect("setup");
    let mut addrs = link_addresses("cbr-ds").unwrap();
    addrs.sort();
    assert_eq!(addrs, vec!["10.6.0.1/24", "fd00:6::1/64"]);
    let fwd = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding").unwrap();
    assert_eq!(fwd.trim(), "1");
    let a = allocate(&env, &helper, attachment("ds", "c1", "eth0")).unwrap();
    assert_eq!(
        a.addresses,
        vec![
            "10.6.0.2/24".parse().unwrap(),
            "fd00:6::2/64".parse().unwrap()
        ]
    );
    assert_eq!(a.routes.len(), 2);
    assert_eq!(a.routes[1].dest, "::/0".parse().unwrap());
    assert_eq!(a.routes[1].gateway, Some("fd00:6::1".parse().unwrap()));
    env.call(&helper, NetworkRequest::Teardown).unwrap();
}

#[test]
fn a_bridge_name_taken_by_another_kind_of_link_is_refused() {
    let env = Env::new();
    run(
        "ip",
        &["link", "add", "brx", "type", "veth", "peer", "name", "brxp"],
    );
    let cfg = config("n1", "bridge", Some("10.4.0.0/24"), &[("bridge", "brx")]);
    let helper = env.helper(&cfg);
    let err = env.call(&helper, NetworkRequest::Setup).unwrap_err();
    assert_eq!(
        err,
        "network n1: setup: link brx already exists and is a veth, not a bridge"
    );
    // Teardown never deletes a link that is not its bridge.
    env.call(&helper, NetworkRequest::Teardown).unwrap();
    assert!(link_addresses("brx").is_some());
}
