//! The edges of bridge and CNI networks end to end: IPv6 usable at once, published
//! ports on both families, the host's loopback kept from containers, bridges the user
//! owns, and what a CNI conflist declares. All inside the test's private namespace.

use container_tests::{busybox_rootfs, World};

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
