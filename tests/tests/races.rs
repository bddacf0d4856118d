//! GC and `system check --fix` racing starts, stops and removes (issue 19, item 1): an
//! address is never released while a start in flight holds it, so it is never handed
//! out twice; a live attachment that lost its reservation is found and given it back.
//! And a stop that comes while a start is half way waits for it, then stops it.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::process::Stdio;
use std::time::{Duration, Instant};

use container_protocol::fault::PAUSE_ENV;
use container_tests::{busybox_rootfs, eventually, World, HANG};

fn running_addresses(w: &World) -> BTreeMap<String, Vec<String>> {
    let mut held: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in w
        .json(&["ls", "--format", "json"])
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let id = c["id"].as_str().unwrap_or_default().to_string();
        for a in c["addresses"].as_array().cloned().unwrap_or_default() {
            held.entry(a.as_str().unwrap_or_default().to_string())
                .or_default()
                .push(id.clone());
        }
    }
    held
}

/// Reservation files of a host-local directory: address -> holder.
fn reservations(dir: &std::path::Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.parse::<std::net::IpAddr>().ok()?;
                    let holder = std::fs::read_to_string(e.path()).ok()?;
                    Some((name, holder.lines().next()?.trim().to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn assert_no_address_twice(w: &World, reservation_dir: &std::path::Path, context: &str) {
    let held = running_addresses(w);
    for (ip, holders) in &held {
        assert_eq!(holders.len(), 1, "{context}: {ip} held by {holders:?}");
    }
    let on_disk = reservations(reservation_dir);
    for (ip, holders) in &held {
        assert_eq!(
            on_disk.get(ip),
            Some(&holders[0]),
            "{context}: running {} holds {ip} but its reservation is {:?}",
            holders[0],
            on_disk.get(ip)
        );
    }
}

/// Starts and removes containers on a five-address network while another client loops
/// `network gc` and `system check --fix`. Before the fix, GC released the address of a
/// container still starting (its state not yet `running`) and the next start got it.
fn race(w: &World, network: &str, reservation_dir: &std::path::Path, rootfs: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let stop = stop.clone();
        let (root, run) = (w.root(), w.run_dir());
        let network = network.to_string();
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let args: &[&str] = if rounds % 3 == 2 {
                    &["system", "check", "--fix"]
                } else {
                    &["network", "gc", &network]
                };
                let _ = std::process::Command::new(container_tests::bin("container"))
                    .env("CONTAINER_ROOT", &root)
                    .env("CONTAINER_RUN_DIR", &run)
                    .args(args)
                    .output();
                rounds += 1;
            }
            rounds
        })
    };
    for round in 0..4 {
        let names: Vec<String> = (0..3).map(|i| format!("{network}-r{round}c{i}")).collect();
        for name in &names {
            w.run_sleeping(name, network, rootfs, 200);
        }
        assert_no_address_twice(w, reservation_dir, &format!("round {round}"));
        // Stop one, remove one running: their addresses come free for the next round.
        w.ok(&["stop", "-t", "0", &names[0]]);
        w.ok(&["rm", "-f", &names[0], &names[1]]);
        assert_no_address_twice(w, reservation_dir, &format!("round {round} after rm"));
        w.ok(&["rm", "-f", &names[2]]);
    }
    stop.store(true, Ordering::SeqCst);
    let rounds = collector.join().expect("collector");
    assert!(rounds > 0, "the collector ran");
    let check = w.cli(&["system", "check"]);
    assert!(
        check.status.success(),
        "check after the race: {}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn gc_and_check_racing_starts_on_a_bridge_network_never_hand_out_an_address_twice() {
    let mut w = World::new();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    w.start_apiserver();
    w.ok(&["network", "create", "--subnet", "10.77.0.0/29", "small"]);
    let dir = w.root().join("ipam").join("small");
    race(&w, "small", &dir, &rootfs);
}

#[test]
fn gc_and_check_racing_starts_on_a_cni_network_never_del_a_live_attachment() {
    let mut w = World::new();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    let data = w.iso.dir().join("cni-data");
    let conflist = w.iso.dir().join("small.conflist");
    std::fs::write(
        &conflist,
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "cnismall",
            "plugins": [{
                "type": "bridge",
                "bridge": "cni-small0",
                "isGateway": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.78.0.0/29"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": data,
                }
            }]
        })
        .to_string(),
    )
    .unwrap();
    w.start_apiserver();
    w.ok(&[
        "network",
        "create",
        "--plugin",
        "cni",
        "--opt",
        &format!("conflist={}", conflist.display()),
        "cnismall",
    ]);
    race(&w, "cnismall", &data.join("cnismall"), &rootfs);
}

#[test]
fn check_finds_a_running_container_whose_reservation_is_gone_and_fix_restores_it() {
    let mut w = World::new();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    w.start_apiserver();
    w.ok(&["network", "create", "--subnet", "10.79.0.0/29", "tiny"]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "--network",
        "tiny",
        "--rootfs",
        &rootfs,
        "--",
        "sleep",
        "200",
    ]);
    let ip = running_addresses(&w)
        .into_keys()
        .next()
        .expect("keep has an address");
    let file = w.root().join("ipam").join("tiny").join(&ip);
    std::fs::remove_file(&file).expect("remove the reservation by hand");

    let out = w.cli(&["system", "check", "--format", "json"]);
    assert!(!out.status.success(), "check must not say clean");
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let missing: Vec<_> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "missing-reservation")
        .collect();
    assert_eq!(missing.len(), 1, "{findings}");
    assert_eq!(missing[0]["object"], format!("tiny {ip}"));

    w.ok(&["system", "check", "--fix"]);
    let holder = std::fs::read_to_string(&file).expect("reservation restored, not freed");
    assert!(holder.starts_with("keep"), "{holder}");
    // And the address is not handed out again.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "tiny",
        "--rootfs",
        &rootfs,
        "--",
        "sleep",
        "200",
    ]);
    let held = running_addresses(&w);
    assert!(held.values().all(|h| h.len() == 1), "{held:?}");
    let ips: HashSet<_> = held.keys().collect();
    assert_eq!(ips.len(), 2);
    w.ok(&["system", "check"]);
    w.ok(&["rm", "-f", "keep", "other"]);
}

/// A start paused after its record says `running` and before its workload starts,
/// and a stop sent into that window. Before the fix, the stop found a helper with
/// nothing to stop, killed it and waited for an exit that the start's undo never
/// announced: the stop, and every `rm -f` after it, hung for good.
#[test]
fn a_stop_during_a_start_waits_for_it_and_then_stops_the_container() {
    let mut w = World::new();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    w.start_apiserver_with(&[(PAUSE_ENV, "apiserver:after-setup=1500")]);
    w.ok(&["network", "create", "--subnet", "10.80.0.0/29", "paused"]);
    w.ok(&[
        "create",
        "--name",
        "half",
        "--network",
        "paused",
        "--rootfs",
        &rootfs,
        "--",
        "sleep",
        "200",
    ]);
    let start = w
        .cli_command(&["start", "half"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn start");
    eventually("the start to reach its pause", || {
        w.apiserver_log()
            .contains("fault pause apiserver:after-setup")
    });
    let mut stop = w
        .cli_command(&["stop", "-t", "0", "half"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stop");
    let deadline = Instant::now() + HANG;
    while stop.try_wait().expect("wait for stop").is_none() {
        if Instant::now() > deadline {
            let _ = stop.kill();
            panic!("the stop hung for {HANG:?}\n{}", w.apiserver_log());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let stop = stop.wait_with_output().expect("stop");
    assert!(
        stop.status.success(),
        "stop: {}\n{}",
        String::from_utf8_lossy(&stop.stderr),
        w.apiserver_log()
    );
    let start = start.wait_with_output().expect("start");
    assert!(
        start.status.success(),
        "the start ran whole before the stop: {}",
        String::from_utf8_lossy(&start.stderr)
    );
    let state = w.json(&["inspect", "half"]);
    assert_eq!(state[0]["state"]["status"], "stopped", "{state}");
    w.ok(&["system", "check"]);
    w.ok(&["rm", "-f", "half"]);
    w.ok(&["system", "check"]);
}
