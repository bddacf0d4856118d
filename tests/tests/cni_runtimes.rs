//! Issue 14: `container-cni` under real runtimes: this project's own `--plugin cni`
//! networks, and containerd's `ctr run --cni`.

mod cni_common;

use cni_common::*;
use container_tests::{setup, World};
use serde_json::json;

fn conflist(world: &World, name: &str, bridge: &str, subnet: &str) -> (String, std::path::PathBuf) {
    let data = world.root().join("cni-ipam");
    let list = json!({
        "cniVersion": "1.1.0",
        "name": name,
        "plugins": [{
            "type": "container-cni",
            "bridge": bridge,
            "isGateway": true,
            "isDefaultGateway": true,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": data},
        }],
    });
    let path = world.iso.dir().join(format!("{name}.conflist"));
    std::fs::write(&path, list.to_string()).expect("write conflist");
    (path.display().to_string(), data.join(name))
}

/// The same binary serves this project: a `--plugin cni` network whose conflist names
/// `container-cni` gives two containers addresses that reach each other, CHECKs them,
/// and gives the addresses back at `rm`.
#[test]
fn network_create_plugin_cni_with_container_cni() {
    let s = setup();
    let w = &s.world;
    let (conflist, dir) = conflist(w, "ours", "cniours0", "10.81.0.0/24");
    let cni_path = format!("{}:{REFERENCE}", container_testkit::bin_dir().display());
    w.ok(&[
        "network",
        "create",
        "--plugin",
        "cni",
        "--opt",
        &format!("conflist={conflist}"),
        "--opt",
        &format!("cni_path={cni_path}"),
        "ours",
    ]);
    for name in ["a", "b"] {
        w.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "ours",
            "--rootfs",
            &s.rootfs,
            "--",
            "sleep",
            "600",
        ]);
    }
    let holders: Vec<String> = reservations(&dir).into_iter().map(|(_, h)| h).collect();
    assert_eq!(holders.len(), 2, "{holders:?}");
    let addr_of = |name: &str| {
        let out = w.ok(&["exec", name, "--", "ip", "-4", "-o", "addr", "show", "eth0"]);
        let cidr = out
            .split_whitespace()
            .skip_while(|t| *t != "inet")
            .nth(1)
            .unwrap_or_else(|| panic!("no address on {name}'s eth0: {out}"))
            .to_string();
        cidr.split('/').next().expect("ip").to_string()
    };
    let b = addr_of("b");
    assert!(b.starts_with("10.81.0."), "{b}");
    w.ok(&["exec", "a", "--", "ping", "-c", "1", "-W", "5", &b]);
    let check = w.cli(&["system", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    w.ok(&["rm", "-f", "a", "b"]);
    assert!(reservations(&dir).is_empty(), "{:?}", reservations(&dir));
    assert!(our_host_ends().is_empty(), "{:?}", our_host_ends());
    w.ok(&["network", "rm", "ours"]);
}
