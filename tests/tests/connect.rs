//! `network connect` and `network disconnect` (issue 13): running containers gain and
//! lose interfaces live while traffic on their other networks goes on, names follow,
//! stopped containers change on the record only, bad input changes nothing, and a
//! crash of the apiserver at any step leaves the container attached or not at all.

use std::process::Output;
use std::time::{Duration, Instant};

use container_protocol::fault::CONNECT_POINTS;
use container_tests::{busybox_rootfs, eventually, setup, Setup, World, HANG};

fn run(world: &World, rootfs: &str, name: &str, extra: &[&str], cmd: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name, "--rootfs", rootfs];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(cmd);
    world.ok(&args);
}

fn sleeper(s: &Setup, name: &str, extra: &[&str]) {
    run(&s.world, &s.rootfs, name, extra, &["sleep", "1000"]);
}

fn exec(world: &World, ctr: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["exec", ctr];
    args.extend_from_slice(cmd);
    world.cli(&args)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What busybox nslookup answers for NAME from inside CTR (at SERVER if given).
fn lookup(world: &World, ctr: &str, name: &str, server: Option<&str>) -> Option<String> {
    let mut cmd = vec!["nslookup", name];
    cmd.extend(server);
    let out = exec(world, ctr, &cmd);
    let answer = String::from_utf8_lossy(&out.stdout)
        .split_once("Name:")?
        .1
        .to_string();
    (out.status.success() && answer.contains("Address")).then_some(answer)
}

/// The container's interfaces, as its own /sys shows them.
fn links_in(world: &World, ctr: &str) -> Vec<String> {
    let out = exec(world, ctr, &["ls", "/sys/class/net"]);
    assert!(out.status.success(), "ls /sys/class/net: {}", text(&out));
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// The networks a container's configuration names and those its state holds
/// addresses on.
fn attached(world: &World, ctr: &str) -> (Vec<String>, Vec<String>) {
    let v = &world.json(&["inspect", ctr])[0];
    let names = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n["network"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    (
        names(&v["config"]["networks"]),
        names(&v["state"]["allocations"]),
    )
}

fn address_of(world: &World, ctr: &str, network: &str) -> Option<String> {
    let v = world.json(&["inspect", ctr]);
    v[0]["state"]["allocations"]
        .as_array()?
        .iter()
        .find(|a| a["network"] == network)?["addresses"]
        .as_array()?
        .iter()
        .filter_map(|a| a.as_str())
        .map(|a| a.split('/').next().unwrap_or_default().to_string())
        .next()
}

/// The IPAM reservations on `network`, as files.
fn reservations(world: &World, network: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(world.root().join("ipam").join(network)) else {
        return vec![];
    };
    let mut v: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    v.sort();
    v
}

fn check_clean(world: &World, context: &str) {
    let out = world.cli(&["system", "check", "--format", "json"]);
    assert!(
        out.status.success(),
        "{context}: system check is not clean: {}\n--- apiserver log ---\n{}",
        text(&out),
        world.apiserver_log()
    );
}

/// Counts of the ping loop's `ok` and `FAIL` lines in its log.
fn pings(world: &World, ctr: &str) -> (usize, usize) {
    let log = world.ok(&["logs", ctr]);
    (
        log.lines().filter(|l| *l == "ok").count(),
        log.lines().filter(|l| *l == "FAIL").count(),
    )
}

#[test]
fn a_running_container_joins_and_leaves_a_network_while_traffic_flows() {
    let s = setup();
    let w = &s.world;
    w.ok(&["network", "create", "--subnet", "10.93.1.0/24", "front"]);
    w.ok(&["network", "create", "--subnet", "10.93.2.0/24", "back"]);
    sleeper(&s, "db", &["--network", "back"]);
    sleeper(&s, "web", &["--network", "front"]);
    let web_front = address_of(w, "web", "front").expect("web on front");
    // Traffic on front all along: a ping a fifth of a second, each answered or not.
    let script = format!(
        "while true; do if ping -c1 -W1 {web_front} >/dev/null 2>&1; then echo ok; else echo FAIL; fi; sleep 0.2; done"
    );
    run(
        w,
        &s.rootfs,
        "client",
        &["--network", "front"],
        &["sh", "-c", &script],
    );
    eventually("the ping loop answers", || pings(w, "client").0 > 0);
    let before = pings(w, "client");

    // web has no name on back yet.
    assert!(lookup(w, "db", "web", None).is_none());
    w.ok(&["network", "connect", "--alias", "www", "back", "web"]);
    assert_eq!(
        attached(w, "web"),
        (
            vec!["front".into(), "back".into()],
            vec!["front".into(), "back".into()]
        )
    );
    assert_eq!(links_in(w, "web"), ["eth0", "eth1", "lo"]);
    let web_back = address_of(w, "web", "back").expect("web on back");
    assert!(web_back.starts_with("10.93.2."), "{web_back}");
    assert!(reservations(w, "back").contains(&web_back));
    // Its names answer on back, for back's containers, at once.
    for name in ["web", "www"] {
        let got = lookup(w, "db", name, None).unwrap_or_else(|| panic!("{name} on back"));
        assert!(got.contains(&web_back), "{name}: {got}");
    }
    // And it reaches back's containers, by address and by name (its resolv.conf now
    // names back's gateway too).
    let db = address_of(w, "db", "back").expect("db on back");
    let ping = exec(w, "web", &["ping", "-c1", "-W2", &db]);
    assert!(ping.status.success(), "ping db: {}", text(&ping));
    let resolv = text(&exec(w, "web", &["cat", "/etc/resolv.conf"]));
    assert!(
        resolv.contains("nameserver 10.93.1.1") && resolv.contains("nameserver 10.93.2.1"),
        "{resolv}"
    );
    let got = lookup(w, "web", "db", Some("10.93.2.1")).expect("db from web");
    assert!(got.contains(&db), "{got}");
    check_clean(w, "connected");

    w.ok(&["network", "disconnect", "back", "web"]);
    assert_eq!(
        attached(w, "web"),
        (vec!["front".into()], vec!["front".into()])
    );
    assert_eq!(links_in(w, "web"), ["eth0", "lo"]);
    assert!(
        lookup(w, "db", "web", None).is_none(),
        "web's name left back"
    );
    assert!(lookup(w, "db", "www", None).is_none(), "so did its alias");
    assert!(!reservations(w, "back").contains(&web_back));
    let resolv = text(&exec(w, "web", &["cat", "/etc/resolv.conf"]));
    assert!(!resolv.contains("10.93.2.1"), "{resolv}");
    check_clean(w, "disconnected");

    // Front carried on through both: more answers, no losses.
    let start = Instant::now();
    while pings(w, "client").0 < before.0 + 5 {
        assert!(start.elapsed() < HANG, "the ping loop stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, failed) = pings(w, "client");
    assert_eq!(
        failed, before.1,
        "pings on front failed meanwhile ({ok} answered)"
    );

    // Both changes are network events naming the container.
    let events = w.ok(&[
        "events",
        "--since",
        "10m",
        "--until",
        "0s",
        "--filter",
        "type=network",
        "--format",
        "json",
    ]);
    for action in ["connect", "disconnect"] {
        assert!(
            events.lines().any(|l| l.contains(&format!("\"{action}\""))
                && l.contains("\"back\"")
                && l.contains("\"web\"")),
            "no {action} event: {events}"
        );
    }
}

#[test]
fn a_stopped_container_changes_on_its_record_and_starts_with_both_interfaces() {
    let s = setup();
    let w = &s.world;
    w.ok(&["network", "create", "--subnet", "10.93.3.0/24", "one"]);
    w.ok(&["network", "create", "--subnet", "10.93.4.0/24", "two"]);
    sleeper(&s, "peer", &["--network", "two"]);
    w.ok(&[
        "create",
        "--name",
        "app",
        "--network",
        "one",
        "--rootfs",
        &s.rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    w.ok(&[
        "network",
        "connect",
        "--ip",
        "10.93.4.50",
        "--alias",
        "cache",
        "two",
        "app",
    ]);
    assert_eq!(
        attached(w, "app"),
        (vec!["one".into(), "two".into()], vec![])
    );
    assert!(reservations(w, "two").iter().all(|r| r != "10.93.4.50"));
    w.ok(&["start", "app"]);
    assert_eq!(links_in(w, "app"), ["eth0", "eth1", "lo"]);
    assert_eq!(address_of(w, "app", "two").as_deref(), Some("10.93.4.50"));
    let got = lookup(w, "peer", "cache", None).expect("cache on two");
    assert!(got.contains("10.93.4.50"), "{got}");
    let ping = exec(w, "peer", &["ping", "-c1", "-W2", "app"]);
    assert!(ping.status.success(), "ping app: {}", text(&ping));

    // Stopped again, it leaves on the record; its next start has one interface.
    w.ok(&["stop", "-t", "1", "app"]);
    w.ok(&["network", "disconnect", "one", "app"]);
    assert_eq!(attached(w, "app"), (vec!["two".into()], vec![]));
    // Even its last network, without -f: it does not run.
    w.ok(&["network", "disconnect", "two", "app"]);
    w.ok(&["network", "connect", "two", "app"]);
    w.ok(&["start", "app"]);
    assert_eq!(links_in(w, "app"), ["eth0", "lo"]);
    assert!(address_of(w, "app", "two").is_some());
    check_clean(w, "after the stopped container's changes");
}

#[test]
fn bad_input_is_refused_with_exit_125_and_changes_nothing() {
    let s = setup();
    let w = &s.world;
    w.ok(&["network", "create", "--subnet", "10.93.5.0/24", "n1"]);
    w.ok(&["network", "create", "--subnet", "10.93.6.0/24", "n2"]);
    sleeper(&s, "db", &["--network", "n2"]);
    sleeper(&s, "web", &["--network", "n1"]);
    sleeper(&s, "nic", &["--network", "n2,mac=02:00:00:00:00:42"]);
    let db = address_of(w, "db", "n2").expect("db on n2");
    let record = |w: &World| {
        let v = &w.json(&["inspect", "web"])[0];
        (
            v["config"].clone(),
            v["state"]["allocations"].clone(),
            v["state"]["pending"].clone(),
        )
    };
    let before = (record(w), reservations(w, "n1"), reservations(w, "n2"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["connect", "--alias", "db", "n2", "web"],
            "alias db is already the name of container db",
        ),
        (
            vec!["connect", "n1", "web"],
            "already connected to network n1",
        ),
        (
            vec!["connect", "--ip", "10.93.9.9", "n2", "web"],
            "address 10.93.9.9 is not in network n2",
        ),
        (
            vec!["connect", "--ip", &db, "n2", "web"],
            "is already taken on network n2 by container db",
        ),
        (vec!["disconnect", "n1", "web"], "give -f"),
        (
            vec!["disconnect", "n2", "web"],
            "is not connected to network n2",
        ),
        (
            vec!["connect", "--alias", "bad_name!", "n2", "web"],
            "invalid alias",
        ),
        // Past the apiserver's checks: the helper refuses the gateway's address, and the
        // steps before (claims, the recorded intent) are undone.
        (
            vec!["connect", "--ip", "10.93.6.1", "n2", "web"],
            "10.93.6.1",
        ),
        (
            vec!["connect", "--mac", "02:00:00:00:00:42", "n2", "web"],
            "MAC address 02:00:00:00:00:42 on network n2 is in use by container nic",
        ),
    ];
    for (args, want) in cases {
        let mut full = vec!["network"];
        full.extend_from_slice(&args);
        let out = w.cli(&full);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(want), "{args:?}: {}", text(&out));
        assert_eq!(
            (record(w), reservations(w, "n1"), reservations(w, "n2")),
            before,
            "{args:?} changed something"
        );
    }
    // Unknown names are not found (exit 1), and change nothing either.
    for args in [
        ["network", "connect", "nosuch", "web"],
        ["network", "connect", "n2", "nosuch"],
    ] {
        let out = w.cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
    }
    assert_eq!(record(w), before.0);
    assert_eq!(links_in(w, "web"), ["eth0", "lo"]);
    check_clean(w, "after bad input");

    // With -f, a running container may lose its last network: loopback is left.
    w.ok(&["network", "disconnect", "-f", "n1", "web"]);
    assert_eq!(links_in(w, "web"), ["lo"]);
    assert_eq!(attached(w, "web"), (vec![], vec![]));
    assert!(reservations(w, "n1").is_empty());
    check_clean(w, "after disconnect -f");
}

/// Each step of a connect and a disconnect, with the apiserver SIGKILLed right after
/// it: after a restart the container is attached fully or not at all (its record, its
/// interfaces, its reservations and its names agree), IPAM GC finds nothing to collect
/// and `system check` is clean.
#[test]
fn a_crash_at_each_step_leaves_the_container_attached_or_not() {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver();
    world.ok(&["network", "create", "--subnet", "10.93.7.0/24", "a"]);
    world.ok(&["network", "create", "--subnet", "10.93.8.0/24", "b"]);
    run(
        &world,
        &rootfs,
        "peer",
        &["--network", "b"],
        &["sleep", "1000"],
    );
    for (i, point) in CONNECT_POINTS.iter().enumerate() {
        let ctr = format!("c{i}");
        run(
            &world,
            &rootfs,
            &ctr,
            &["--network", "a"],
            &["sleep", "1000"],
        );
        let connecting = point.contains(":connect-");
        if !connecting {
            world.ok(&["network", "connect", "b", &ctr]);
        }
        world.kill_apiserver();
        world.start_apiserver_with(&[("CONTAINER_FAULT", point)]);
        let verb = if connecting { "connect" } else { "disconnect" };
        let out = world.cli(&["network", verb, "b", &ctr]);
        assert!(!out.status.success(), "{point}: the fault did not fire");
        let deadline = Instant::now() + HANG;
        while world.apiserver_alive() {
            assert!(Instant::now() < deadline, "{point}: the apiserver lives on");
            std::thread::sleep(Duration::from_millis(20));
        }
        world.start_apiserver();

        // Fully one way: a connect is undone unless its record was written, a
        // disconnect finished once its intent was.
        let want_attached = *point == "apiserver:connect-after-record";
        let (config, state) = attached(&world, &ctr);
        let links = links_in(&world, &ctr);
        let address = address_of(&world, &ctr, "b");
        let ipam = reservations(&world, "b");
        let named = lookup(&world, "peer", &ctr, None);
        if want_attached {
            assert_eq!(
                (config, state),
                (vec!["a".into(), "b".into()], vec!["a".into(), "b".into()]),
                "{point}"
            );
            assert_eq!(links, ["eth0", "eth1", "lo"], "{point}");
            let ip = address.expect("an address on b");
            assert!(ipam.contains(&ip), "{point}: {ip} not reserved: {ipam:?}");
            assert!(named.is_some_and(|n| n.contains(&ip)), "{point}: no name");
        } else {
            assert_eq!(
                (config, state),
                (vec!["a".into()], vec!["a".into()]),
                "{point}"
            );
            assert_eq!(links, ["eth0", "lo"], "{point}");
            assert!(address.is_none(), "{point}");
            let peer = address_of(&world, "peer", "b").expect("peer on b");
            assert_eq!(ipam, vec![peer], "{point}: reservations left");
            assert!(named.is_none(), "{point}: its name still answers");
        }
        let gc = world.ok(&["network", "gc", "b"]);
        assert!(gc.trim().is_empty(), "{point}: GC collected {gc}");
        check_clean(&world, point);
        // And it still changes: the other way, cleanly.
        let verb = if want_attached {
            "disconnect"
        } else {
            "connect"
        };
        world.ok(&["network", verb, "b", &ctr]);
        check_clean(&world, &format!("{point}, then {verb}"));
        world.ok(&["rm", "-f", &ctr]);
    }
}

/// A network helper SIGKILLed under running containers (issue 13): what the user sees.
/// Traffic goes on (the bridge, the veths and the rules are the kernel's), names stop
/// answering at once (their server died with the helper), `system status` lists no
/// helper for the network. Nothing starts a new one behind anyone's back: the next
/// operation that needs the network (here `network inspect`; a run, start, connect, GC
/// or `system check` alike) starts it, with its set-up, GC and names, and names answer
/// again.
#[test]
fn a_killed_network_helper_leaves_traffic_and_takes_names_until_one_is_needed() {
    let s = setup();
    let w = &s.world;
    w.ok(&["network", "create", "--subnet", "10.93.9.0/24", "n"]);
    sleeper(&s, "a", &["--network", "n"]);
    sleeper(&s, "b", &["--network", "n"]);
    let b = address_of(w, "b", "n").expect("b on n");
    assert!(lookup(w, "a", "b", None).is_some_and(|x| x.contains(&b)));
    let pid_file = w.run_dir().join("helpers/network/n.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the helper's pid file")
        .trim()
        .parse()
        .expect("a pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the network helper");
    eventually("the apiserver sees the helper gone", || {
        let status = w.json(&["system", "status", "--format", "json"]);
        !status["helpers"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["id"] == "n" && h["kind"] == "network"))
    });
    // The kernel's part stays: the containers still reach each other.
    let ping = exec(w, "a", &["ping", "-c1", "-W2", &b]);
    assert!(ping.status.success(), "ping b: {}", text(&ping));
    // The name server was the helper: names do not answer, and nothing restarts it.
    assert!(
        lookup(w, "a", "b", None).is_none(),
        "names answered without a helper"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        lookup(w, "a", "b", None).is_none(),
        "a helper came back by itself"
    );
    assert!(
        !pid_file.exists()
            || std::fs::read_to_string(&pid_file)
                .unwrap_or_default()
                .trim()
                == pid.to_string(),
        "a new helper was started behind the user's back"
    );
    // Listing answers from the records and needs no helper: still none.
    assert!(w.ok(&["network", "ls"]).contains("10.93.9.0/24"));
    assert!(lookup(w, "a", "b", None).is_none(), "ls started a helper");
    // An operation that needs the helper starts a new one, set up with the names.
    w.json(&["network", "inspect", "n"]);
    let new: i32 = std::fs::read_to_string(&pid_file)
        .expect("the new helper's pid file")
        .trim()
        .parse()
        .expect("a pid");
    assert_ne!(new, pid);
    assert!(
        lookup(w, "a", "b", None).is_some_and(|x| x.contains(&b)),
        "names are back"
    );
    let ping = exec(w, "a", &["ping", "-c1", "-W2", "b"]);
    assert!(ping.status.success(), "ping b by name: {}", text(&ping));
    check_clean(w, "after the new helper");
}
