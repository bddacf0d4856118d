//! `system prune`: what nothing uses goes, what runs stays, and the summary says which.

use container_tests::{busybox_rootfs, World};

#[test]
fn prune_removes_stopped_containers_and_unused_networks_and_keeps_what_runs() {
    let mut w = World::new();
    w.start_apiserver();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    w.ok(&["network", "create", "--subnet", "10.78.0.0/24", "used"]);
    w.ok(&["network", "create", "--subnet", "10.79.0.0/24", "unused"]);
    let running = w.ok(&[
        "run",
        "-d",
        "--network",
        "used",
        "--rootfs",
        &rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    let stopped = w.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "true",
    ]);
    let created = w.ok(&[
        "create",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "true",
    ]);
    let (running, stopped, created) = (running.trim(), stopped.trim(), created.trim());
    w.ok(&["wait", stopped]);

    let v = w.json(&["system", "prune", "--format", "json"]);
    let mut gone: Vec<&str> = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    gone.sort();
    let mut want = vec![stopped, created];
    want.sort();
    assert_eq!(gone, want, "{v}");
    assert_eq!(v["networks"], serde_json::json!(["unused"]), "{v}");
    let left = w.json(&["ls", "-a", "--format", "json"]);
    assert_eq!(left.as_array().map(Vec::len), Some(1));
    assert_eq!(left[0]["id"], running);
    let networks = w.ok(&["network", "ls"]);
    assert!(
        networks.contains("used") && !networks.contains("unused"),
        "{networks}"
    );
    // The summary, for people.
    w.ok(&["stop", "-t", "1", running]);
    let text = w.ok(&["system", "prune"]);
    assert!(
        text.contains("Deleted containers:") && text.contains(running),
        "{text}"
    );
    assert!(text.contains("Deleted networks:\nused"), "{text}");
    assert!(text.contains("Total reclaimed space:"), "{text}");
    w.ok(&["system", "check"]);
}
