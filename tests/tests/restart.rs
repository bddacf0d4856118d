//! Restart policies end to end: counted restarts with a growing back-off, `always`
//! across an apiserver restart, a user's stop remembered, and a crash in the middle of
//! a back-off.

use std::time::{Duration, Instant};

use container_protocol::fault::FAULT_ENV;
use container_tests::{busybox_rootfs, World};

fn state(w: &World, id: &str) -> serde_json::Value {
    w.json(&["inspect", id])[0]["state"].clone()
}

fn wait_for(w: &World, id: &str, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = state(w, id);
        if cond(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {s}\n{}",
            w.apiserver_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn events(w: &World, id: &str) -> Vec<(String, u64)> {
    w.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--format",
        "json",
        "--filter",
        &format!("container={id}"),
    ])
    .lines()
    .map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).expect("json");
        (
            v["action"].as_str().unwrap_or_default().to_string(),
            v["time_nano"].as_u64().unwrap_or_default(),
        )
    })
    .collect()
}

#[test]
fn on_failure_3_restarts_exactly_three_times_each_wait_longer_then_stays_stopped() {
    let mut w = World::new();
    w.start_apiserver();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    let id = w.ok(&[
        "run",
        "-d",
        "--restart",
        "on-failure:3",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "sh",
        "-c",
        "exit 1",
    ]);
    let id = id.trim();
    wait_for(&w, id, "three restarts, then stopped", |s| {
        s["restart_count"] == 3 && s["status"] == "stopped" && s["restart_pending"] == false
    });
    // Stays stopped: nothing is pending and no fourth run comes.
    std::thread::sleep(Duration::from_millis(1200));
    let s = state(&w, id);
    assert_eq!(
        (s["restart_count"].as_u64(), s["status"].as_str()),
        (Some(3), Some("stopped")),
        "{s}"
    );
    assert_eq!(s["exit_code"], 1);

    let seen = events(&w, id);
    let actions: Vec<&str> = seen.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["create", "start", "die", "restart", "die", "restart", "die", "restart", "die"],
        "{seen:?}"
    );
    // Each wait (die → restart) at least the back-off: 100, 200, 400 ms.
    let gaps: Vec<u64> = seen
        .windows(2)
        .filter(|p| p[0].0 == "die" && p[1].0 == "restart")
        .map(|p| (p[1].1 - p[0].1) / 1_000_000)
        .collect();
    assert_eq!(gaps.len(), 3);
    for (gap, floor) in gaps.iter().zip([100, 200, 400]) {
        assert!(
            *gap >= floor,
            "gaps {gaps:?} ms: each at least its back-off"
        );
    }

    // A user's start counts again from zero.
    w.ok(&["start", id]);
    wait_for(&w, id, "counted from zero", |s| {
        s["restart_count"] == 3 && s["status"] == "stopped"
    });
}

#[test]
fn always_comes_back_after_an_apiserver_restart_and_unless_stopped_remembers_a_stop() {
    let mut w = World::new();
    w.start_apiserver();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    let run = |w: &World, policy: &str| {
        w.ok(&[
            "run",
            "-d",
            "--restart",
            policy,
            "--network",
            "none",
            "--rootfs",
            &rootfs,
            "--",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string()
    };
    let always = run(&w, "always");
    let always_stopped = run(&w, "always");
    let unless = run(&w, "unless-stopped");
    let unless_stopped = run(&w, "unless-stopped");
    let plain = run(&w, "no");
    // The workload killed from inside: `always` brings it back at once.
    let pid = state(&w, &always)["pid"].as_u64().expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    wait_for(&w, &always, "restarted after a kill from outside", |s| {
        s["status"] == "running" && s["restart_count"] == 1
    });
    // A user's stop: no policy undoes it.
    w.ok(&["stop", "-t", "1", &always_stopped]);
    w.ok(&["stop", "-t", "1", &unless_stopped]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&w, &always_stopped)["status"], "stopped");
    assert_eq!(state(&w, &unless_stopped)["status"], "stopped");

    // The apiserver stops every helper, and starts again.
    w.ok(&["system", "stop"]);
    w.kill_apiserver();
    w.start_apiserver();
    for (id, running) in [
        (&always, true),
        // Docker's `always`: a user's stop lasts until the daemon restarts.
        (&always_stopped, true),
        (&unless, true),
        (&unless_stopped, false),
        (&plain, false),
    ] {
        if running {
            wait_for(&w, id, "back after the apiserver's restart", |s| {
                s["status"] == "running"
            });
        } else {
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(state(&w, id)["status"], "stopped", "{id}");
        }
    }
    w.ok(&["system", "check"]);
}

#[test]
fn a_crash_during_a_back_off_and_the_policy_still_holds() {
    let mut w = World::new();
    w.start_apiserver_with(&[(FAULT_ENV, "apiserver:restart-pending")]);
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    let id = w.ok(&[
        "run",
        "-d",
        "--restart",
        "on-failure:2",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    let id = id.trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.apiserver_alive() {
        assert!(
            Instant::now() < deadline,
            "the fault point was never reached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The decision was recorded before the crash; the next apiserver carries it out.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(w.root().join("containers").join(&id).join("state.json"))
            .expect("state"),
    )
    .expect("json");
    assert_eq!(record["restart_pending"], true, "{record}");
    w.start_apiserver();
    wait_for(&w, &id, "two restarts in all, then stopped", |s| {
        s["restart_count"] == 2 && s["status"] == "stopped" && s["restart_pending"] == false
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(state(&w, &id)["restart_count"], 2);
    w.ok(&["system", "check"]);
}

#[test]
fn bad_policies_are_refused_and_change_nothing() {
    let mut w = World::new();
    w.start_apiserver();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    for (policy, rm, named) in [
        ("sometimes", false, "\"sometimes\""),
        ("on-failure:-1", false, "\"on-failure:-1\""),
        ("on-failure:0", false, "\"on-failure:0\""),
        ("always", true, "--rm and --restart always conflict"),
    ] {
        let mut args = vec![
            "run",
            "-d",
            "--restart",
            policy,
            "--network",
            "none",
            "--rootfs",
            &rootfs,
        ];
        if rm {
            args.push("--rm");
        }
        args.extend(["--", "true"]);
        let out = w.cli(&args);
        assert_eq!(out.status.code(), Some(125), "{policy}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{policy}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(
        w.json(&["ls", "-a", "--format", "json"]),
        serde_json::json!([])
    );
}
