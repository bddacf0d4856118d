//! The edges of bridge and CNI networks end to end: IPv6 usable at once, published
//! ports on both families, the host's loopback kept from containers, bridges the user
//! owns, and what a CNI conflist declares. All inside the test's private namespace.

use container_tests::{busybox_rootfs, links, World};

struct Setup {
    world: World,
    rootfs: String,
}

fn setup() -> Setup {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver();
    Setup { world, rootfs }
}

/// Issue 19.4: the runtime's IPv6 addresses skip DAD, so the first packet after start
/// goes out. One ping each, no retry: a tentative address fails at once.
#[test]
fn ipv6_answers_at_once_after_start() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "network",
        "create",
        "--subnet",
        "10.71.0.0/24",
        "--subnet-v6",
        "fd71::/64",
        "v6n",
    ]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "v6n,ip6=fd71::10",
        "--rootfs",
        &s.rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "v6n",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "ping6 -c 1 -W 5 fd71::1 >/dev/null && echo gateway-ok; \
         ping6 -c 1 -W 5 fd71::10 >/dev/null && echo peer-ok",
    ]);
    assert!(out.contains("gateway-ok"), "{out}");
    assert!(out.contains("peer-ok"), "{out}");
    w.ok(&["rm", "-f", "peer"]);
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

/// Issue 19.5: `network rm` removes the bridge only when the runtime made it, and
/// knows which it made across a restart of the apiserver and the network helper.
#[test]
fn network_rm_leaves_a_users_bridge_and_removes_its_own() {
    let mut s = setup();
    ip(&["link", "add", "userbr0", "type", "bridge"]);
    let w = &s.world;
    w.ok(&[
        "network",
        "create",
        "--subnet",
        "10.72.0.0/24",
        "--opt",
        "bridge=userbr0",
        "theirs",
    ]);
    w.ok(&[
        "network",
        "create",
        "--subnet",
        "10.73.0.0/24",
        "--opt",
        "bridge=ourbr0",
        "mine",
    ]);
    assert!(links().contains(&"ourbr0".to_string()), "created by setup");
    // Both are used: a container reaches its gateway on the user's bridge.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "theirs",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "ping -c 1 -W 5 10.72.0.1 >/dev/null && echo ok",
    ]);
    assert!(out.contains("ok"), "{out}");

    // A restart of everything: what was created is known from disk.
    s.world.kill_apiserver();
    container_tests::kill_helpers_under(&s.world.run_dir());
    s.world.start_apiserver();
    let w = &s.world;
    w.ok(&["network", "rm", "theirs", "mine"]);
    let now = links();
    assert!(
        now.contains(&"userbr0".to_string()),
        "the user's bridge stays: {now:?}"
    );
    assert!(!now.contains(&"ourbr0".to_string()), "ours goes: {now:?}");
    assert!(!s.world.root().join("networks/mine.bridge").exists());

    // Made again under the same name, it is the user's again.
    w.ok(&[
        "network",
        "create",
        "--subnet",
        "10.73.0.0/24",
        "--opt",
        "bridge=userbr0",
        "again",
    ]);
    w.ok(&["network", "rm", "again"]);
    assert!(links().contains(&"userbr0".to_string()));
}
