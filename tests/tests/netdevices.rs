//! OCI `linux.netDevices` end to end (seed 003): host devices moved into a container,
//! renamed, with their addresses, MTU and MAC, and handed back. Veth pairs stand in for
//! host NICs (this kernel has no dummy links).

use std::process::Command;

use container_tests::{busybox_rootfs, eventually, ip_json, links, World};

const MAC: &str = "02:aa:bb:cc:dd:01";

fn sh(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip");
    assert!(status.success(), "ip {args:?}");
}

/// A "host NIC" with addresses, MTU and MAC, as an operator would prepare one.
fn nic(name: &str, mac: &str, v4: &str, v6: &str) {
    sh(&[
        "link",
        "add",
        name,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{name}p"),
    ]);
    sh(&["link", "set", name, "mtu", "1400", "address", mac]);
    sh(&["addr", "add", v4, "dev", name]);
    sh(&["addr", "add", v6, "dev", name, "nodad"]);
    sh(&["link", "set", name, "up"]);
}

/// (name, mtu, mac, global addresses) of a link in the current namespace.
fn describe(name: &str) -> Option<(String, u64, String, Vec<String>)> {
    let link = ip_json(&["addr", "show", "dev", name])
        .as_array()?
        .first()?
        .clone();
    let mut addrs: Vec<String> = link["addr_info"]
        .as_array()?
        .iter()
        .filter(|a| a["scope"] == "global")
        .filter_map(|a| {
            Some(format!(
                "{}/{}",
                a["local"].as_str()?,
                a["prefixlen"].as_u64()?
            ))
        })
        .collect();
    addrs.sort();
    Some((
        link["ifname"].as_str()?.to_string(),
        link["mtu"].as_u64()?,
        link["address"].as_str()?.to_string(),
        addrs,
    ))
}

fn setup() -> (World, String) {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver();
    (world, rootfs)
}

#[test]
fn a_device_moves_in_renamed_with_its_addresses_and_comes_back_on_stop() {
    let (w, rootfs) = setup();
    nic("nica", MAC, "192.0.2.10/24", "2001:db8::10/64");
    let before = describe("nica").expect("nica");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "nd",
        "--net-device",
        "nica=data0",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    assert!(
        !links().contains(&"nica".to_string()),
        "the device left the host"
    );
    let inside = w.ok(&["exec", "nd", "ip", "addr", "show", "data0"]);
    for want in ["mtu 1400", MAC, "192.0.2.10/24", "2001:db8::10/64", "UP"] {
        assert!(inside.contains(want), "{want} missing inside: {inside}");
    }
    let record = &w.json(&["inspect", "nd"])[0];
    assert_eq!(
        record["config"]["netDevices"],
        serde_json::json!({"nica": {"name": "data0"}})
    );
    let moved = &record["state"]["net_devices"][0];
    assert_eq!(moved["host_name"], "nica");
    assert_eq!(moved["container_name"], "data0");

    w.ok(&["stop", "-t", "1", "nd"]);
    eventually("device back", || describe("nica").is_some());
    assert_eq!(
        describe("nica"),
        Some(before),
        "name, MTU, MAC and addresses as they were"
    );
    w.ok(&["rm", "nd"]);
}

#[test]
fn ten_create_remove_cycles_give_identical_results() {
    let (w, rootfs) = setup();
    nic(
        "nicb",
        "02:aa:bb:cc:dd:02",
        "192.0.2.20/24",
        "2001:db8::20/64",
    );
    let before = describe("nicb").expect("nicb");
    for i in 0..10 {
        let out = w.ok(&[
            "run",
            "--rm",
            "--net-device",
            "nicb=data0",
            "--rootfs",
            &rootfs,
            "--",
            "sh",
            "-c",
            "ip -o addr show data0 | grep -c global",
        ]);
        assert_eq!(out.trim(), "2", "cycle {i}: {out}");
        assert_eq!(describe("nicb").as_ref(), Some(&before), "cycle {i}");
    }
}

#[test]
fn two_devices_beside_two_networks() {
    let (w, rootfs) = setup();
    nic(
        "nicc",
        "02:aa:bb:cc:dd:03",
        "192.0.2.30/24",
        "2001:db8::30/64",
    );
    nic(
        "nicd",
        "02:aa:bb:cc:dd:04",
        "198.51.100.40/24",
        "2001:db8:1::40/64",
    );
    w.ok(&["network", "create", "--subnet", "10.74.0.0/24", "n2"]);
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "default",
        "--network",
        "n2",
        "--net-device",
        "nicc=fast0",
        "--net-device",
        "nicd",
        "--rootfs",
        &rootfs,
        "--",
        "sh",
        "-c",
        "for i in eth0 eth1 fast0 nicd; do ip -o -4 addr show $i | awk '{print $2, $4}'; done",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("eth0 10.88.0."), "{out}");
    assert!(lines[1].starts_with("eth1 10.74.0."), "{out}");
    assert_eq!(lines[2], "fast0 192.0.2.30/24");
    assert_eq!(lines[3], "nicd 198.51.100.40/24");
    assert!(links().contains(&"nicc".to_string()) && links().contains(&"nicd".to_string()));
}

#[test]
fn every_check_fails_cleanly_naming_the_device() {
    let (w, rootfs) = setup();
    nic(
        "nice",
        "02:aa:bb:cc:dd:05",
        "192.0.2.50/24",
        "2001:db8::50/64",
    );
    let before = describe("nice");
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--rm", "--net-device", "nosuch0", "--", "true"],
            "nosuch0",
        ),
        (&["run", "--rm", "--net-device", "lo", "--", "true"], "lo"),
        (
            &[
                "run",
                "--rm",
                "--net-device",
                "nice=much-too-long-name",
                "--",
                "true",
            ],
            "much-too-long-name",
        ),
        (
            &["run", "--rm", "--net-device", "nice=a/b", "--", "true"],
            "a/b",
        ),
        (
            &["run", "--rm", "--net-device", "nice=..", "--", "true"],
            "..",
        ),
        (
            &["run", "--rm", "--net-device", "nice=eth0", "--", "true"],
            "eth0",
        ),
    ];
    for (args, expected) in cases {
        let err = w.fails(args);
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err}"
        );
        assert_eq!(describe("nice"), before, "{args:?} changed the device");
    }
    // A created container does not hold its device (claimed at start, as Docker does
    // with ports): another container may use it meanwhile.
    w.ok(&[
        "create",
        "--name",
        "holder",
        "--net-device",
        "nice",
        "--rootfs",
        &rootfs,
        "--",
        "sleep",
        "100",
    ]);
    w.ok(&[
        "run",
        "--rm",
        "--net-device",
        "nice",
        "--rootfs",
        &rootfs,
        "--",
        "true",
    ]);
    eventually("device back", || describe("nice") == before);
    // A running one does.
    w.ok(&["start", "holder"]);
    let err = w.fails(&["run", "--rm", "--net-device", "nice", "--", "true"]);
    assert!(err.contains("nice"), "{err}");
    w.ok(&["rm", "-f", "holder"]);
    eventually("device back", || describe("nice") == before);
    let ls = w.json(&["ls", "-a", "--format", "json"]);
    assert!(ls.as_array().is_some_and(|a| a.is_empty()), "{ls}");
}

#[test]
fn a_config_file_carries_net_devices_in_the_oci_shape() {
    let (w, rootfs) = setup();
    nic(
        "nicf",
        "02:aa:bb:cc:dd:06",
        "192.0.2.60/24",
        "2001:db8::60/64",
    );
    let config = serde_json::json!({
        "id": "fromfile",
        "process": { "args": ["sh", "-c", "ip -o -4 addr show data9 | awk '{print $4}'"] },
        "rootfs": rootfs,
        "networks": [],
        "netDevices": { "nicf": { "name": "data9" } }
    });
    let path = w.iso.dir().join("config.json");
    std::fs::write(&path, config.to_string()).expect("write config");
    w.ok(&["create", "--config", path.to_str().expect("path")]);
    let record = &w.json(&["inspect", "fromfile"])[0];
    assert_eq!(record["config"]["netDevices"]["nicf"]["name"], "data9");
    w.ok(&["start", "fromfile"]);
    assert_eq!(w.ok(&["wait", "fromfile"]).trim(), "0");
    assert_eq!(w.ok(&["logs", "fromfile"]).trim(), "192.0.2.60/24");
    eventually("device back", || describe("nicf").is_some());
}

#[test]
fn a_device_the_kernel_returned_after_a_crash_is_restored_by_its_mac() {
    let (mut w, rootfs) = setup();
    nic(
        "nicg",
        "02:aa:bb:cc:dd:07",
        "192.0.2.70/24",
        "2001:db8::70/64",
    );
    let before = describe("nicg").expect("nicg");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "crash",
        "--net-device",
        "nicg=data0",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    let helper = w.json(&["inspect", "crash"])[0]["state"]["helper_pid"]
        .as_u64()
        .expect("helper") as i32;
    // The whole runtime dies at once.
    w.kill_apiserver();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helper),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill helper");
    // What the kernel does with a physical device when its namespace dies: back in
    // the host namespace under its container-side name, without addresses. A veth
    // would be destroyed instead, so do the kernel's part by hand.
    let netns = w.run_dir().join("netns/crash");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let ns = container_netlink::NetNs::open(&netns).expect("container netns");
        let inside = container_netlink::Netlink::connect_in(&ns).expect("netlink inside");
        let link = inside
            .link_by_name("data0")
            .await
            .expect("lookup")
            .expect("data0 inside");
        let here = container_netlink::NetNs::current().expect("this netns");
        inside
            .move_to_netns(link.index, &here, None)
            .await
            .expect("move back");
    });
    container_netlink::NetNs::remove_bound(&netns).expect("unmount netns");
    let returned = describe("data0").expect("data0 on the host");
    assert!(
        returned.3.is_empty(),
        "the kernel drops addresses on a move"
    );

    w.start_apiserver();
    eventually("restored", || describe("nicg").is_some());
    assert_eq!(
        describe("nicg"),
        Some(before),
        "host name and addresses restored"
    );
    assert!(describe("data0").is_none());
    let state = &w.json(&["inspect", "crash"])[0]["state"];
    assert_eq!(state["status"], "stopped");
    let check = w.cli(&["system", "check"]);
    assert!(
        check.status.success(),
        "system check: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
