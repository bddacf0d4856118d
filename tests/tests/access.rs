//! Who can reach what: containers cannot reach the apiserver, helper sockets are
//! root-only, nothing listens on TCP.

use std::os::unix::fs::PermissionsExt;

use container_tests::{busybox_rootfs, World};

#[test]
fn a_container_without_rootfs_cannot_see_the_runtime_state_or_sockets() {
    let mut world = World::new();
    world.start_apiserver();
    let run = world.run_dir().display().to_string();
    let root = world.root().display().to_string();
    let script = format!(
        "ls -A {run} | wc -l; ls -A {root} | wc -l; test -e {run}/apiserver.sock && echo visible || echo hidden; cat /etc/hostname"
    );
    let out = world.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--hostname",
        "h1",
        "--host-rootfs",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines, vec!["0", "0", "hidden", "h1"], "{out}");
}

#[test]
fn a_container_with_a_rootfs_cannot_see_the_runtime_either() {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver();
    let socket = world.socket().display().to_string();
    let out = world.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "sh",
        "-c",
        &format!("test -e {socket} && echo visible || echo hidden"),
    ]);
    assert_eq!(out.trim(), "hidden");
}

#[test]
fn helper_sockets_are_root_only_and_nothing_listens_on_tcp() {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver();
    world.ok(&[
        "run", "-d", "--name", "c1", "--rootfs", &rootfs, "--", "sleep", "1000",
    ]);
    let helpers = world.run_dir().join("helpers");
    assert_eq!(
        std::fs::metadata(&helpers)
            .expect("helpers dir")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    for kind in ["network", "sandbox"] {
        let dir = helpers.join(kind);
        assert_eq!(
            std::fs::metadata(&dir)
                .expect("kind dir")
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        for e in std::fs::read_dir(&dir).expect("list").flatten() {
            if e.path().extension().is_some_and(|x| x == "sock") {
                let mode = e.metadata().expect("meta").permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", e.path().display());
            }
        }
    }
    // This network namespace is the test's own: any listening TCP socket in it would
    // belong to the apiserver or a helper.
    // thread-self: /proc/net follows the main thread, which is in the host namespace.
    for table in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        let listening: Vec<&str> = text
            .lines()
            .skip(1)
            .filter(|l| l.split_whitespace().nth(3) == Some("0A"))
            // The networks' name servers listen on their gateways' port 53 (issue 13,
            // networking.md); nothing else may, and nothing of the control plane.
            .filter(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_none_or(|local| !local.ends_with(":0035"))
            })
            .collect();
        assert!(listening.is_empty(), "{table} has listeners: {listening:?}");
    }
    world.ok(&["rm", "-f", "c1"]);
}
