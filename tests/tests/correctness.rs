//! Bugs a hostile review found (issue 19), each shown fixed end to end: a network whose
//! removal was cut short, a network whose bridge went missing, names that are not
//! hostnames, a helper's death explained without a backtrace, a MAC used twice.

use container_protocol::fault::{FAULT_ENV, FAULT_LOG_ENV};
use container_tests::{busybox_rootfs, eventually, links, setup, World};

fn link_exists(name: &str) -> bool {
    links().iter().any(|l| l == name)
}

fn bridge_of(w: &World, network: &str) -> String {
    let v = w.json(&["network", "inspect", network]);
    v[0]["state"]["link"]
        .as_str()
        .expect("a bridge network reports its bridge")
        .to_string()
}

#[test]
fn a_network_rm_cut_short_by_a_crash_is_finished_at_the_next_start() {
    let mut w = World::new();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    let log = w.iso.dir().join("faults.log").display().to_string();
    w.start_apiserver_with(&[
        (FAULT_ENV, "apiserver:network-rm-after-teardown"),
        (FAULT_LOG_ENV, &log),
    ]);
    w.ok(&["network", "create", "--subnet", "10.66.0.0/24", "doomed"]);
    let bridge = bridge_of(&w, "doomed");
    assert!(link_exists(&bridge));
    let _ = w.cli(&["network", "rm", "doomed"]);
    eventually("the apiserver died at the fault point", || {
        !w.apiserver_alive()
    });
    assert!(!link_exists(&bridge), "torn down before the crash");

    w.start_apiserver();
    // Before the fix: still listed, helper alive, bridge gone; `run` failed with
    // "bridge not found" and `check` said clean.
    let ls = w.ok(&["network", "ls"]);
    assert!(!ls.contains("doomed"), "the removal was finished: {ls}");
    assert!(!link_exists(&bridge));
    w.ok(&["system", "check"]);
    // The name is free again, and works.
    w.ok(&["network", "create", "--subnet", "10.66.0.0/24", "doomed"]);
    w.ok(&[
        "run",
        "--rm",
        "--network",
        "doomed",
        "--rootfs",
        &rootfs,
        "--",
        "true",
    ]);
}

#[test]
fn check_verifies_each_networks_own_devices_and_fix_puts_them_back() {
    let s = setup();
    let w = &s.world;
    w.ok(&["network", "create", "--subnet", "10.67.0.0/24", "fragile"]);
    let bridge = bridge_of(w, "fragile");
    let status = std::process::Command::new("ip")
        .args(["link", "del", &bridge])
        .status()
        .expect("ip");
    assert!(status.success());

    let out = w.cli(&["system", "check", "--format", "json"]);
    assert!(
        !out.status.success(),
        "a listed network without its bridge is not clean"
    );
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        found
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "network"
                && f["object"] == "fragile"
                && f["detail"].as_str().unwrap_or("").contains("missing")),
        "{found}"
    );
    w.ok(&["system", "check", "--fix"]);
    assert!(link_exists(&bridge), "set up again");
    w.ok(&["system", "check"]);
    w.ok(&[
        "run",
        "--rm",
        "--network",
        "fragile",
        "--rootfs",
        &s.rootfs,
        "--",
        "true",
    ]);
}

#[test]
fn a_name_that_is_no_hostname_still_names_a_container() {
    let s = setup();
    let w = &s.world;
    // Before the fix: "invalid hostname", since the default hostname is the name.
    let out = w.ok(&[
        "run",
        "--rm",
        "--name",
        "a_b",
        "--rootfs",
        &s.rootfs,
        "--",
        "cat",
        "/etc/hostname",
    ]);
    assert_eq!(out.trim(), "a-b");
}

#[test]
fn a_helper_that_dies_at_start_is_explained_without_a_backtrace() {
    let mut w = World::new();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    w.start_apiserver_with(&[("RUST_BACKTRACE", "1")]);
    // Something answers on the sandbox helper's socket, as a live twin would: the
    // helper refuses to start, before serving.
    let dir = w.run_dir().join("helpers/sandbox");
    std::fs::create_dir_all(&dir).unwrap();
    let twin = std::os::unix::net::UnixListener::bind(dir.join("dies.sock")).unwrap();
    let err = w.fails(&[
        "run",
        "--rm",
        "--name",
        "dies",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "true",
    ]);
    assert!(err.contains("did not start"), "{err}");
    assert!(
        err.contains("already running"),
        "the helper's own error: {err}"
    );
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");
    assert!(
        !err.contains("rust_begin_unwind") && !err.contains(" at /"),
        "{err}"
    );
    drop(twin);
    std::fs::remove_file(dir.join("dies.sock")).unwrap();
    w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "true",
    ]);
}

#[test]
fn a_mac_address_is_held_by_one_running_container_per_network() {
    let s = setup();
    let w = &s.world;
    w.ok(&["network", "create", "--subnet", "10.68.0.0/24", "macs"]);
    let net = "macs,mac=02:42:0a:44:00:09";
    w.ok(&[
        "run",
        "-d",
        "--name",
        "m1",
        "--network",
        net,
        "--rootfs",
        &s.rootfs,
        "--",
        "sleep",
        "100",
    ]);
    // Created: fine (claimed at start). Started: refused, naming the holder.
    w.ok(&[
        "create",
        "--name",
        "m2",
        "--network",
        net,
        "--rootfs",
        &s.rootfs,
        "--",
        "sleep",
        "100",
    ]);
    let err = w.fails(&["start", "m2"]);
    assert!(
        err.contains("MAC address 02:42:0a:44:00:09 on network macs is in use by container m1"),
        "{err}"
    );
    w.ok(&["stop", "-t", "0", "m1"]);
    w.ok(&["start", "m2"]);
    w.ok(&["rm", "-f", "m1", "m2"]);
}

#[test]
fn check_judges_host_links_by_their_owner_mark_not_their_name() {
    let s = setup();
    let w = &s.world;
    let ip = |args: &[&str]| {
        let st = std::process::Command::new("ip")
            .args(args)
            .status()
            .expect("ip");
        assert!(st.success(), "ip {args:?}");
    };
    // A user's veth that happens to look like ours: before, `check --fix` deleted it.
    ip(&[
        "link",
        "add",
        "veth0123456789a",
        "type",
        "veth",
        "peer",
        "name",
        "userpeer0",
    ]);
    // Ours, left by a container that is gone: found and removed.
    ip(&[
        "link",
        "add",
        "vethdead0000001",
        "type",
        "veth",
        "peer",
        "name",
        "deadpeer0",
    ]);
    ip(&[
        "link",
        "set",
        "vethdead0000001",
        "alias",
        "container:ghost:eth0",
    ]);
    let out = w.cli(&["system", "check", "--format", "json"]);
    assert!(!out.status.success());
    let found = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        found.contains("vethdead0000001") && found.contains("container ghost"),
        "{found}"
    );
    assert!(!found.contains("veth0123456789a"), "{found}");
    w.ok(&["system", "check", "--fix"]);
    assert!(!link_exists("vethdead0000001"));
    assert!(
        link_exists("veth0123456789a"),
        "a link without our mark is never ours"
    );
    // A running container's own host end is marked, and kept.
    w.ok(&[
        "run", "-d", "--name", "live", "--rootfs", &s.rootfs, "--", "sleep", "100",
    ]);
    w.ok(&["system", "check"]);
    w.ok(&["rm", "-f", "live"]);
}
