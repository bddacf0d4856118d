//! The cni plugin running Debian's containernetworking-plugins (`bridge`, `host-local`,
//! `tuning`) into a network namespace the test makes.

mod common;

use std::path::Path;

use common::*;
use container_netlink::{NetNs, Netlink};
use container_network_helper::plugins::HostEnv;
use container_network_helper::Plugin;
use container_protocol::network::{NetworkRequest, NetworkResponse, PluginData};

const CNI_DIR: &str = "/usr/lib/cni";

fn conflist(dir: &Path, data_dir: &Path) -> String {
    let text = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "cnitest",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni-t0",
                "isGateway": true,
                "capabilities": {"ips": true},
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.77.0.0/24"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": data_dir,
                }
            },
            {"type": "tuning"}
        ]
    });
    let path = dir.join("test.conflist");
    std::fs::write(&path, text.to_string()).unwrap();
    path.display().to_string()
}

/// Global IPv4 addresses of `ifname` inside `ns`, or `None` when the link is absent.
fn addresses_in(env: &Env, ns: &NetNs, ifname: &str) -> Option<Vec<String>> {
    env.rt.block_on(async {
        let nl = Netlink::connect_in(ns).unwrap();
        let link = nl.link_by_name(ifname).await.unwrap()?;
        let addrs = nl.addresses(link.index).await.unwrap();
        Some(
            addrs
                .iter()
                .filter(|a| a.address.addr().is_ipv4())
                .map(|a| a.address.to_string())
                .collect(),
        )
    })
}

#[test]
fn cni_chain_add_check_del_gc() {
    if !Path::new(CNI_DIR).join("bridge").exists() {
        eprintln!("skipped: {CNI_DIR}/bridge is not installed");
        return;
    }
    let env = Env::new();
    let data_dir = env.iso.root().join("cni-ipam");
    let list = conflist(env.iso.dir(), &data_dir);
    let helper = env.helper(&config(
        "c1net",
        "cni",
        None,
        &[("conflist", &list), ("cni_path", CNI_DIR)],
    ));
    env.call(&helper, NetworkRequest::Setup).expect("setup");
    let ns_path = env.iso.run_dir().join("netns").join("c1");
    let ns = NetNs::create_bound(&ns_path).unwrap();
    let ns_str = ns_path.display().to_string();

    // Without a netns there is nothing for CNI to build in.
    let err = allocate(&env, &helper, attachment("c1net", "c1", "eth0")).unwrap_err();
    assert!(
        err.starts_with(
            "network c1net: allocate: plugin cni: the attachment has no network namespace"
        ),
        "{err}"
    );

    let mut att = attachment("c1net", "c1", "eth0");
    att.netns = Some(ns_str.clone());
    let a = allocate(&env, &helper, att).expect("ADD");
    assert_eq!(a.plugin().as_str(), "cni");
    assert_eq!(a.addresses, vec!["10.77.0.2/24".parse().unwrap()]);
    assert_eq!(
        a.gateways,
        vec!["10.77.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(
        a.routes
            .iter()
            .any(|r| r.dest == "0.0.0.0/0".parse().unwrap()),
        "{a:?}"
    );
    assert!(a.mac.is_some());
    let PluginData::Cni { result } = &a.data else {
        panic!("{:?}", a.data)
    };
    let result: serde_json::Value = serde_json::from_str(result).unwrap();
    assert_eq!(result["ips"][0]["address"], "10.77.0.2/24");
    assert_eq!(
        addresses_in(&env, &ns, "eth0"),
        Some(vec!["10.77.0.2/24".to_string()])
    );
    assert!(data_dir.join("cnitest").join("10.77.0.2").exists());
    let cache = env.iso.root().join("networks/c1net.cni/c1/eth0.json");
    assert!(cache.exists());

    // CHECK against the recorded result.
    let Plugin::Cni(cni) = helper.plugin() else {
        panic!("not cni")
    };
    env.rt
        .block_on(async {
            let nl = Netlink::connect().unwrap();
            let paths = env.paths();
            cni.check(
                HostEnv {
                    netlink: &nl,
                    paths: &paths,
                },
                "c1",
                "eth0",
                &ns_str,
            )
            .await
        })
        .expect("CHECK");

    let NetworkResponse::State(state) = env.call(&helper, NetworkRequest::State).unwrap() else {
        panic!("state");
    };
    assert_eq!(state.plugin.as_str(), "cni");
    assert_eq!(state.reservations.len(), 1);
    assert_eq!(state.reservations[0].container_id, "c1");

    // A failing ADD (static IP outside host-local's range) is undone.
    let ns2_path = env.iso.run_dir().join("netns").join("c2");
    let ns2 = NetNs::create_bound(&ns2_path).unwrap();
    let mut att = attachment("c1net", "c2", "eth0");
    att.netns = Some(ns2_path.display().to_string());
    att.ipv4 = Some("10.99.0.5".parse().unwrap());
    let err = allocate(&env, &helper, att).unwrap_err();
    assert!(
        err.starts_with("network c1net: allocate: cni plugin bridge ADD:"),
        "{err}"
    );
    assert_eq!(
        addresses_in(&env, &ns2, "eth0"),
        None,
        "half-made interface left"
    );
    assert!(!env.iso.root().join("networks/c1net.cni/c2").exists());

    // DEL takes the interface and the host-local reservation away.
    let released = env
        .call(
            &helper,
            NetworkRequest::Release {
                container_id: "c1".into(),
                ifname: "eth0".into(),
                netns: Some(ns_str.clone()),
            },
        )
        .expect("DEL");
    assert!(
        matches!(&released, NetworkResponse::Released(ips) if ips == &vec!["10.77.0.2".parse::<std::net::IpAddr>().unwrap()]),
        "{released:?}"
    );
    assert_eq!(addresses_in(&env, &ns, "eth0"), None);
    assert!(!data_dir.join("cnitest").join("10.77.0.2").exists());
    assert!(!cache.exists());
    // Idempotent.
    env.call(
        &helper,
        NetworkRequest::Release {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: Some(ns_str.clone()),
        },
    )
    .expect("second DEL");

    // GC DELs a recorded attachment whose container is not live.
    let mut att = attachment("c1net", "c3", "eth0");
    att.netns = Some(ns_str.clone());
    let a = allocate(&env, &helper, att).expect("ADD c3");
    let ip = a.addresses[0].addr();
    let NetworkResponse::Collected(gone) = env
        .call(&helper, NetworkRequest::Gc { live: vec![] })
        .unwrap()
    else {
        panic!("gc");
    };
    assert_eq!(gone.len(), 1);
    assert_eq!((gone[0].ip, gone[0].container_id.as_str()), (ip, "c3"));
    assert_eq!(addresses_in(&env, &ns, "eth0"), None);
    assert!(!data_dir.join("cnitest").join(ip.to_string()).exists());

    env.call(&helper, NetworkRequest::Teardown)
        .expect("teardown");
    assert!(!env.iso.root().join("networks/c1net.cni").exists());

    drop((ns, ns2));
    NetNs::remove_bound(&ns_path).unwrap();
    NetNs::remove_bound(&ns2_path).unwrap();
}

#[test]
fn cni_setup_names_a_missing_binary() {
    let env = Env::new();
    let list = env.iso.dir().join("missing.conflist");
    std::fs::write(
        &list,
        r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"type":"no-such-plugin"}]}"#,
    )
    .unwrap();
    let helper = env.helper(&config(
        "c2net",
        "cni",
        None,
        &[
            ("conflist", &list.display().to_string()),
            ("cni_path", CNI_DIR),
        ],
    ));
    let err = env.call(&helper, NetworkRequest::Setup).unwrap_err();
    assert_eq!(
        err,
        format!("network c2net: setup: cni plugin no-such-plugin setup: binary not found in CNI_PATH {CNI_DIR}")
    );
}
