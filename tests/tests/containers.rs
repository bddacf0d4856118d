//! Containers end to end: real sandbox helpers, namespaces, veths and workloads, driven
//! only through the CLI and the apiserver, inside the test's private namespace.

use std::process::Command;

use container_tests::{alive, eventually, links, netns_mounts, read_from, setup, World};

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn reservations(world: &World, network: &str) -> Vec<String> {
    std::fs::read_dir(world.root().join("ipam").join(network))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn container(world: &World, id: &str) -> serde_json::Value {
    world.json(&["inspect", id])[0].clone()
}

#[test]
fn exit_codes_propagate_and_rm_leaves_nothing_behind() {
    let s = setup();
    let w = &s.world;
    let links_before = links();
    let out = w.cli(&[
        "run",
        "--rm",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(
        code(&out),
        3,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    eventually("container removed", || {
        w.json(&["ls", "-a", "--format", "json"])
            .as_array()
            .is_some_and(|a| a.is_empty())
    });
    assert!(reservations(w, "default").is_empty(), "no reservation left");
    eventually("host veth gone with the namespace", || {
        links() == links_before
    });
    assert!(netns_mounts(w).is_empty(), "no netns mount left");
    let sandboxes = std::fs::read_dir(w.run_dir().join("helpers/sandbox"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(sandboxes, 0, "no sandbox helper files left");
}

#[test]
fn workload_is_pid_1_with_its_own_hostname_and_files() {
    let s = setup();
    let out = s.world.ok(&[
        "run",
        "--rm",
        "--hostname",
        "box",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "echo $$; hostname; cat /etc/hostname; ls /proc/1 >/dev/null && echo proc",
    ]);
    assert_eq!(out, "1\nbox\nbox\nproc\n");
}

#[test]
fn two_containers_on_one_bridge_reach_each_other() {
    let s = setup();
    let w = &s.world;
    w.ok(&["network", "create", "--subnet", "10.70.0.0/24", "n"]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "n,ip=10.70.0.10",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "while true; do echo pong | nc -l -p 7000; done",
    ]);
    let out = w.ok(&[
        "run", "--rm", "--network", "n", "--rootfs", &s.rootfs, "--", "sh", "-c",
        "ping -c 1 -W 5 10.70.0.10 >/dev/null && echo ping-ok; for i in 1 2 3 4 5; do nc 10.70.0.10 7000 && break; sleep 0.2; done",
    ]);
    assert!(out.contains("ping-ok"), "{out}");
    assert!(out.contains("pong"), "{out}");
    w.ok(&["rm", "-f", "srv"]);
    assert!(reservations(w, "n").is_empty());
}

#[test]
fn a_container_on_two_networks_of_two_plugins() {
    let s = setup();
    let w = &s.world;
    assert!(Command::new("ip")
        .args(["link", "add", "nic0", "type", "veth", "peer", "name", "nic0p"])
        .status()
        .expect("ip")
        .success());
    assert!(Command::new("ip")
        .args(["link", "set", "nic0", "up"])
        .status()
        .expect("ip")
        .success());
    w.ok(&["network", "create", "--subnet", "10.71.0.0/24", "b1"]);
    w.ok(&[
        "network",
        "create",
        "--plugin",
        "macvlan",
        "--opt",
        "parent=nic0",
        "--subnet",
        "10.72.0.0/24",
        "m1",
    ]);
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "b1",
        "--network",
        "m1",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "ip addr show eth0; ip addr show eth1; ip route",
    ]);
    assert!(out.contains("10.71.0."), "{out}");
    assert!(out.contains("10.72.0."), "{out}");
    let default_routes: Vec<&str> = out.lines().filter(|l| l.starts_with("default")).collect();
    assert_eq!(
        default_routes.len(),
        1,
        "only the first network gets the default route: {out}"
    );
    assert!(
        default_routes[0].contains("10.71.0.1") && default_routes[0].contains("eth0"),
        "{out}"
    );
}

#[test]
fn a_failing_start_leaves_nothing_behind() {
    let s = setup();
    let w = &s.world;
    let links_before = links();
    let out = w.cli(&["run", "--rm", "--rootfs", &s.rootfs, "--", "nosuchcmd"]);
    assert_ne!(code(&out), 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuchcmd"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(w
        .json(&["ls", "-a", "--format", "json"])
        .as_array()
        .is_some_and(|a| a.is_empty()));
    assert!(reservations(w, "default").is_empty());
    eventually("host veth gone with the namespace", || {
        links() == links_before
    });
    assert!(netns_mounts(w).is_empty());
}

#[test]
fn sigkill_of_a_sandbox_helper_leaves_nothing_and_the_container_reads_stopped() {
    let s = setup();
    let w = &s.world;
    let links_before = links();
    w.ok(&[
        "run", "-d", "--name", "victim", "--rootfs", &s.rootfs, "--", "sleep", "1000",
    ]);
    let state = &container(w, "victim")["state"];
    let helper = state["helper_pid"].as_u64().expect("helper pid") as i32;
    let workload = state["pid"].as_u64().expect("pid") as u32;
    assert_eq!(reservations(w, "default").len(), 1);
    assert_ne!(links(), links_before, "a host veth while running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helper),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    eventually("container stopped", || {
        container(w, "victim")["state"]["status"] == "stopped"
    });
    let state = &container(w, "victim")["state"];
    assert_eq!(state["reason"], "sandbox helper exited unexpectedly");
    eventually("workload gone", || !alive(workload));
    assert!(
        reservations(w, "default").is_empty(),
        "reservation released"
    );
    eventually("host veth gone", || links() == links_before);
    assert!(netns_mounts(w).is_empty(), "netns mount removed");
    w.ok(&["rm", "victim"]);
}

#[test]
fn an_apiserver_restart_keeps_a_running_container_running() {
    let mut s = setup();
    s.world.ok(&[
        "run", "-d", "--name", "keep", "--rootfs", &s.rootfs, "--", "sleep", "1000",
    ]);
    let pid = container(&s.world, "keep")["state"]["pid"]
        .as_u64()
        .expect("pid");
    s.world.kill_apiserver();
    assert!(alive(pid as u32));
    s.world.start_apiserver();
    let after = container(&s.world, "keep");
    assert_eq!(after["state"]["status"], "running");
    assert_eq!(after["state"]["pid"].as_u64(), Some(pid));
    assert_eq!(
        reservations(&s.world, "default").len(),
        1,
        "GC keeps a live container's address"
    );
    s.world.ok(&["stop", "-t", "1", "keep"]);
    assert_eq!(container(&s.world, "keep")["state"]["status"], "stopped");
    assert!(reservations(&s.world, "default").is_empty());
}

#[test]
fn detached_logs_exec_stop_and_wait() {
    let s = setup();
    let w = &s.world;
    let id = w.ok(&[
        "run",
        "-d",
        "--name",
        "d1",
        "--hostname",
        "inside",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "echo hello; echo world; sleep 1000",
    ]);
    assert_eq!(id.trim(), "d1");
    eventually("log written", || w.ok(&["logs", "d1"]) == "hello\nworld\n");
    assert_eq!(w.ok(&["logs", "-n", "1", "d1"]), "world\n");
    assert_eq!(w.ok(&["exec", "d1", "hostname"]), "inside\n");
    let out = w.cli(&["exec", "d1", "sh", "-c", "exit 4"]);
    assert_eq!(code(&out), 4);
    let ls = w.json(&["ls", "--format", "json"]);
    assert_eq!(ls[0]["id"], "d1");
    // sh as PID 1 ignores SIGTERM: stop falls back to SIGKILL after the grace time.
    w.ok(&["stop", "-t", "1", "d1"]);
    assert_eq!(w.ok(&["wait", "d1"]).trim(), "137");
    assert_eq!(container(w, "d1")["state"]["status"], "stopped");
    let err = w.fails(&["exec", "d1", "true"]);
    assert!(err.contains("not running"), "{err}");
    w.ok(&["start", "d1"]);
    assert_eq!(container(w, "d1")["state"]["status"], "running");
    w.ok(&["kill", "d1"]);
    assert_eq!(w.ok(&["wait", "d1"]).trim(), "137");
    w.ok(&["rm", "d1"]);
    let err = w.fails(&["inspect", "d1"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn static_addresses_conflict_and_small_subnets_run_out_cleanly() {
    let s = setup();
    let w = &s.world;
    w.ok(&["network", "create", "--subnet", "10.73.0.0/29", "small"]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "small,ip=10.73.0.2",
        "--rootfs",
        &s.rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    let err = w.fails(&[
        "run",
        "--rm",
        "--network",
        "small,ip=10.73.0.2",
        "--rootfs",
        &s.rootfs,
        "--",
        "true",
    ]);
    assert!(err.contains("10.73.0.2") && err.contains("a"), "{err}");
    let err = w.fails(&[
        "run",
        "--rm",
        "--network",
        "small,ip=10.99.0.2",
        "--rootfs",
        &s.rootfs,
        "--",
        "true",
    ]);
    assert!(err.contains("not in network small"), "{err}");
    // /29: .1 gateway, .2 taken, .3–.6 free, .7 broadcast.
    for i in 0..4 {
        w.ok(&[
            "run",
            "-d",
            "--name",
            &format!("f{i}"),
            "--network",
            "small",
            "--rootfs",
            &s.rootfs,
            "--",
            "sleep",
            "1000",
        ]);
    }
    let err = w.fails(&[
        "run",
        "--rm",
        "--network",
        "small",
        "--rootfs",
        &s.rootfs,
        "--",
        "true",
    ]);
    assert!(err.contains("no free address"), "{err}");
    assert_eq!(reservations(w, "small").len(), 5);
    let err = w.fails(&["network", "rm", "small"]);
    assert!(err.contains("in use") && err.contains("a"), "{err}");
    w.ok(&["rm", "-f", "a", "f0", "f1", "f2", "f3"]);
    assert!(reservations(w, "small").is_empty());
    w.ok(&["network", "rm", "small"]);
}

#[test]
fn bad_container_input_is_refused_with_nothing_changed() {
    let s = setup();
    let w = &s.world;
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--rm", "--name", "Bad/Name", "--", "true"],
            "invalid container name",
        ),
        (
            &["run", "--rm", "--network", "nosuch", "--", "true"],
            "network nosuch not found",
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "default,ifname=waytoolonginterfacename",
                "--",
                "true",
            ],
            "waytoolong",
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "default,colour=red",
                "--",
                "true",
            ],
            "colour",
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "default,mac=zz:zz",
                "--",
                "true",
            ],
            "MAC",
        ),
        (
            &[
                "run",
                "--rm",
                "--rootfs",
                "/nonexistent/rootfs",
                "--",
                "true",
            ],
            "/nonexistent/rootfs",
        ),
        (
            &["run", "--rm", "-u", "a:b:c", "--", "true"],
            "invalid --user",
        ),
        (
            &[
                "run",
                "--rm",
                "--host-rootfs",
                "-u",
                "nosuchuser",
                "--",
                "true",
            ],
            "user \"nosuchuser\" not found in the container's /etc/passwd",
        ),
        (&["run", "--rm"], "no command"),
        (
            &["run", "--rm", "--net-device", "nosuchdev", "--", "true"],
            "nosuchdev",
        ),
        (&["start", "nosuch"], "not found"),
        (&["stop", "nosuch"], "not found"),
        (&["rm", "nosuch"], "not found"),
        (&["kill", "-s", "SIGNOPE", "x"], "invalid signal"),
    ];
    for (args, expected) in cases {
        let out = w.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err:?}"
        );
    }
    assert!(w
        .json(&["ls", "-a", "--format", "json"])
        .as_array()
        .is_some_and(|a| a.is_empty()));
    assert!(reservations(w, "default").is_empty());
}

/// Runs the CLI under `script`, which gives it a pseudo-terminal as a user's shell would.
fn in_terminal(w: &World, cmdline: &str) -> (i32, String) {
    let out = Command::new("script")
        .args(["-qec", cmdline, "/dev/null"])
        .env("CONTAINER_ROOT", w.root())
        .env("CONTAINER_RUN_DIR", w.run_dir())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux)");
    (
        code(&out),
        String::from_utf8_lossy(&out.stdout).replace('\r', ""),
    )
}

#[test]
fn run_and_exec_with_a_terminal() {
    let s = setup();
    let w = &s.world;
    let bin = container_tests::bin("container").display().to_string();
    let (status, out) = in_terminal(
        w,
        &format!("{bin} run --rm -t --network none --rootfs {} -- sh -c 'test -t 0 && test -t 1 && echo tty-yes $TERM; exit 7'", s.rootfs),
    );
    assert_eq!(status, 7, "{out}");
    assert!(out.contains("tty-yes xterm"), "{out}");

    w.ok(&[
        "run",
        "-d",
        "--name",
        "t1",
        "--network",
        "none",
        "--rootfs",
        &s.rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    let (status, out) = in_terminal(w, &format!("{bin} exec -t t1 sh -c 'tty; exit 3'"));
    assert_eq!(status, 3, "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    w.ok(&["rm", "-f", "t1"]);
}

fn nft_ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn published_ports_reach_the_container_and_go_with_it() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:7000",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "while true; do echo hello | nc -l -p 7000; done",
    ]);
    // This namespace is the container's host: its loopback reaches the published port.
    assert_eq!(read_from("127.0.0.1:8080").trim(), "hello");
    assert!(nft_ruleset().contains("8080"), "a forward for 8080");
    let err = w.fails(&[
        "run", "--rm", "-p", "8080:80", "--rootfs", &s.rootfs, "--", "true",
    ]);
    assert!(
        err.contains("host port 8080/tcp is in use by container web"),
        "{err}"
    );
    // Claimed at start, not at create (as Docker): a created container blocks nobody,
    // and a stopped one gives its port back.
    w.ok(&[
        "create", "--name", "later", "-p", "8080:80", "--rootfs", &s.rootfs, "--", "sleep", "100",
    ]);
    let err = w.fails(&["start", "later"]);
    assert!(err.contains("in use by container web"), "{err}");
    assert_eq!(container(w, "later")["state"]["status"], "created");
    let err = w.fails(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-p",
        "9090:80",
        "--",
        "true",
    ]);
    assert!(err.contains("needs a network"), "{err}");
    let err = w.fails(&["run", "--rm", "-p", "80", "--", "true"]);
    assert!(err.contains("invalid --publish"), "{err}");
    w.ok(&["rm", "-f", "web"]);
    assert!(
        !nft_ruleset().contains("8080"),
        "the forward goes with the container"
    );
    assert!(std::net::TcpStream::connect("127.0.0.1:8080").is_err());
    w.ok(&["start", "later"]);
    w.ok(&["rm", "-f", "later"]);
}

/// Docker's exit codes: 127 for a command that is not there, 126 for one that cannot
/// run, 1 for an object that does not exist, 125 for the runtime's own failures; and
/// each layer's context once.
#[test]
fn exit_codes_follow_the_error_kind() {
    let s = setup();
    let w = &s.world;
    std::fs::write(format!("{}/bin/notexec", s.rootfs), "#!/bin/sh\necho hi\n").unwrap();
    for (args, want) in [
        (
            vec![
                "run",
                "--rm",
                "--network",
                "none",
                "--rootfs",
                &s.rootfs,
                "--",
                "nosuch",
            ],
            127,
        ),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "none",
                "--rootfs",
                &s.rootfs,
                "--",
                "/bin/notexec",
            ],
            126,
        ),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "none",
                "--rootfs",
                &s.rootfs,
                "--",
                "/etc",
            ],
            126,
        ),
        (vec!["inspect", "nosuch"], 1),
        (vec!["rm", "nosuch"], 1),
        (vec!["network", "inspect", "nosuch"], 1),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "nosuch",
                "--rootfs",
                &s.rootfs,
                "--",
                "true",
            ],
            1,
        ),
        (
            vec!["run", "--rm", "--rootfs", "/nonexistent", "--", "true"],
            125,
        ),
    ] {
        let out = w.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), want, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        // No layer repeats another's prefix.
        assert!(err.matches("container ").count() <= 2, "{args:?}: {err}");
        assert!(!err.contains("start: start:"), "{args:?}: {err}");
    }
    let out = w.cli(&[
        "create",
        "--name",
        "x1",
        "--network",
        "none",
        "--rootfs",
        &s.rootfs,
        "--",
        "nosuch",
    ]);
    assert!(out.status.success());
    let out = w.cli(&["start", "-a", "x1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 127, "{err}");
    assert_eq!(
        err.matches("container x1").count(),
        1,
        "context once: {err}"
    );
}

#[test]
fn run_as_a_user_named_in_the_containers_own_passwd() {
    let s = setup();
    let w = &s.world;
    let etc = std::path::Path::new(&s.rootfs).join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("group"),
        "root:x:0:\nstaff:x:50:nobody\nnogroup:x:65534:\n",
    )
    .unwrap();
    let run = |user: &str| {
        w.cli(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--rootfs",
            &s.rootfs,
            "-u",
            user,
            "--",
            "sh",
            "-c",
            "echo $(id -u) $(id -g) $(id -G) $HOME",
        ])
    };
    let out = run("nobody");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "65534 65534 65534 50 /nonexistent\n"
    );
    let out = run("nobody:staff");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "65534 50 50 /nonexistent\n"
    );
    // Not in the container's passwd (the host's has no say): refused at start, and
    // the failed run leaves nothing.
    let out = run("nosuchuser");
    assert_eq!(code(&out), 125);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("user \"nosuchuser\" not found in the container's /etc/passwd"),
        "{err}"
    );
    assert_eq!(w.ok(&["ls", "-a", "-q"]).trim(), "");
}
