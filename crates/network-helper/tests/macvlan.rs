//! The macvlan plugin, with a veth pair standing in for the host NIC (this kernel has no
//! dummy links), and two plugins in use at once.

mod common;

use common::*;
use container_protocol::network::{NetworkRequest, NetworkResponse, PluginData};

fn host_nic(name: &str) {
    run(
        "ip",
        &[
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{name}p"),
        ],
    );
    run("ip", &["link", "set", name, "up"]);
}

#[test]
fn macvlan_on_a_veth_parent() {
    let env = Env::new();
    host_nic("nic0");
    let helper = env.helper(&config(
        "m1",
        "macvlan",
        Some("192.168.50.0/24"),
        &[("parent", "nic0"), ("mode", "private"), ("mtu", "1400")],
    ));
    env.call(&helper, NetworkRequest::Setup).expect("setup");
    let a = allocate(&env, &helper, attachment("m1", "c1", "eth0")).unwrap();
    assert_eq!(a.plugin().as_str(), "macvlan");
    assert_eq!(a.addresses, vec!["192.168.50.2/24".parse().unwrap()]);
    assert_eq!(a.routes[0].gateway, Some("192.168.50.1".parse().unwrap()));
    assert_eq!(a.mtu, Some(1400));
    assert_eq!(
        a.data,
        PluginData::Macvlan {
            parent: "nic0".into(),
            mode: container_protocol::network::MacvlanMode::Private
        }
    );
    let NetworkResponse::State(state) = env.call(&helper, NetworkRequest::State).unwrap() else {
        panic!("state");
    };
    assert_eq!(state.link.as_deref(), Some("nic0"));
    assert_eq!(state.link_up, Some(true));
    assert_eq!(state.reservations.len(), 1);

    // Nothing network-wide to remove but the reservations.
    env.call(&helper, NetworkRequest::Teardown)
        .expect("teardown");
    assert!(
        link_addresses("nic0").is_some(),
        "the parent is not ours to delete"
    );
    assert!(!env.paths().ipam_network("m1").unwrap().exists());
}

#[test]
fn missing_parent_is_named() {
    let env = Env::new();
    let cfg = config(
        "m1",
        "macvlan",
        Some("192.168.50.0/24"),
        &[("parent", "nope0")],
    );
    let err = env
        .rt
        .block_on(async {
            let nl = container_netlink::Netlink::connect().unwrap();
            container_network_helper::check_host(&cfg, &nl).await
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "macvlan parent link nope0 does not exist");
    let helper = env.helper(&cfg);
    let err = env.call(&helper, NetworkRequest::Setup).unwrap_err();
    assert_eq!(
        err,
        "network m1: setup: macvlan parent link nope0 does not exist"
    );
}

#[test]
fn failed_plugin_step_gives_the_address_back() {
    let env = Env::new();
    host_nic("nic1");
    let helper = env.helper(&config(
        "m1",
        "macvlan",
        Some("192.168.50.0/24"),
        &[("parent", "nic1")],
    ));
    env.call(&helper, NetworkRequest::Setup).unwrap();
    run("ip", &["link", "del", "nic1"]);
    let err = allocate(&env, &helper, attachment("m1", "c1", "eth0")).unwrap_err();
    assert_eq!(
        err,
        "network m1: allocate: macvlan parent link nic1 does not exist"
    );
    let NetworkResponse::State(state) = env.call(&helper, NetworkRequest::State).unwrap() else {
        panic!("state");
    };
    assert!(state.reservations.is_empty(), "{:?}", state.reservations);
}

#[test]
fn bridge_and_macvlan_networks_at_once() {
    let env = Env::new();
    host_nic("nic2");
    let br = env.helper(&config("b1", "bridge", Some("10.60.0.0/24"), &[]));
    let mv = env.helper(&config(
        "m1",
        "macvlan",
        Some("10.61.0.0/24"),
        &[("parent", "nic2")],
    ));
    env.call(&br, NetworkRequest::Setup).unwrap();
    env.call(&mv, NetworkRequest::Setup).unwrap();
    let a = allocate(&env, &br, attachment("b1", "c1", "eth0")).unwrap();
    let b = allocate(&env, &mv, attachment("m1", "c1", "eth1")).unwrap();
    assert_eq!(a.plugin().as_str(), "bridge");
    assert_eq!(a.addresses, vec!["10.60.0.2/24".parse().unwrap()]);
    assert_eq!(b.plugin().as_str(), "macvlan");
    assert_eq!(b.addresses, vec!["10.61.0.2/24".parse().unwrap()]);
    assert!(matches!(a.data, PluginData::Bridge { .. }));
    assert!(matches!(b.data, PluginData::Macvlan { .. }));
    // Each network's reservations live in its own directory.
    let paths = env.paths();
    assert!(paths.ipam_network("b1").unwrap().join("10.60.0.2").exists());
    assert!(paths.ipam_network("m1").unwrap().join("10.61.0.2").exists());
    // Tearing one down leaves the other intact.
    env.call(&br, NetworkRequest::Teardown).unwrap();
    assert!(link_addresses("cbr-b1").is_none());
    assert!(paths.ipam_network("m1").unwrap().join("10.61.0.2").exists());
    env.call(&mv, NetworkRequest::State).unwrap();
}
