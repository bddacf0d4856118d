//! Health checks end to end: a check exec'd in the container turns it healthy, then
//! unhealthy when it starts failing; `--health-on-failure` kills or restarts it; bad
//! flags are refused.

use std::time::{Duration, Instant};

use container_tests::{busybox_rootfs, World};

fn wait_for(
    w: &World,
    id: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = w.json(&["inspect", id])[0]["state"].clone();
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {s}\n{}",
            w.apiserver_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_check_that_starts_failing_turns_the_container_unhealthy() {
    let mut w = World::new();
    w.start_apiserver();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    let id = w.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--health-cmd",
        "test -f /tmp/ok-$(hostname) && echo fine",
        "--health-interval",
        "150ms",
        "--health-retries",
        "2",
        "--",
        "sh",
        "-c",
        "touch /tmp/ok-$(hostname); exec sleep 1000",
    ]);
    let id = id.trim().to_string();
    let s = wait_for(&w, &id, "healthy", |s| s["health"]["status"] == "healthy");
    let last = &s["health"]["log"].as_array().expect("log")[0];
    assert_eq!(last["exit_code"], 0, "{s}");
    assert_eq!(last["output"], "fine\n", "{s}");
    let ls = w.ok(&["ls"]);
    assert!(ls.contains("running (healthy)"), "{ls}");

    w.ok(&["exec", &id, "sh", "-c", "rm /tmp/ok-$(hostname)"]);
    let s = wait_for(&w, &id, "unhealthy", |s| {
        s["health"]["status"] == "unhealthy"
    });
    assert!(s["health"]["failing_streak"].as_u64() >= Some(2), "{s}");
    assert!(w.ok(&["ls"]).contains("running (unhealthy)"));
    // Still running: nothing was asked for on failure.
    assert_eq!(s["status"], "running");
    let events = w.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        &format!("container={id}"),
    ]);
    let healthy = events.find("health_status: healthy").expect(&events);
    let unhealthy = events.find("health_status: unhealthy").expect(&events);
    assert!(healthy < unhealthy, "{events}");
    // Passing again: healthy again.
    w.ok(&["exec", &id, "sh", "-c", "touch /tmp/ok-$(hostname)"]);
    wait_for(&w, &id, "healthy again", |s| {
        s["health"]["status"] == "healthy"
    });
    w.ok(&["rm", "-f", &id]);
}

#[test]
fn on_failure_restart_restarts_and_kill_stops() {
    let mut w = World::new();
    w.start_apiserver();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    let run = |action: &str| {
        w.ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--rootfs",
            &rootfs,
            "--health-cmd",
            "false",
            "--health-interval",
            "100ms",
            "--health-retries",
            "1",
            "--health-on-failure",
            action,
            "--",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string()
    };
    let restarted = run("restart");
    let killed = run("kill");
    wait_for(&w, &restarted, "restarted after turning unhealthy", |s| {
        s["restart_count"].as_u64() >= Some(1) && s["status"] == "running"
    });
    let s = wait_for(&w, &killed, "killed after turning unhealthy", |s| {
        s["status"] == "stopped"
    });
    assert_eq!(s["exit_code"], 137, "{s}");
    assert_eq!(s["restart_count"], 0);
    w.ok(&["rm", "-f", &restarted]);
    w.ok(&["system", "check"]);
}

#[test]
fn bad_health_flags_are_refused_and_change_nothing() {
    let mut w = World::new();
    w.start_apiserver();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    for (flags, named) in [
        (
            &["--health-cmd", "true", "--health-interval", "0"][..],
            "--health-interval 0",
        ),
        (
            &["--health-cmd", "true", "--health-timeout", "0s"][..],
            "--health-timeout 0",
        ),
        (
            &["--health-cmd", "true", "--health-retries", "0"][..],
            "--health-retries 0",
        ),
        (
            &["--health-cmd", "true", "--health-interval", "soon"][..],
            "\"soon\"",
        ),
        (
            &["--health-cmd", "true", "--health-on-failure", "explode"][..],
            "\"explode\"",
        ),
        (
            &["--health-cmd", "true", "--no-healthcheck"][..],
            "--no-healthcheck",
        ),
    ] {
        let mut args = vec!["run", "-d", "--network", "none", "--rootfs", &rootfs];
        args.extend_from_slice(flags);
        args.extend(["--", "true"]);
        let out = w.cli(&args);
        assert_eq!(out.status.code(), Some(125), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{flags:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(
        w.json(&["ls", "-a", "--format", "json"]),
        serde_json::json!([])
    );
}
