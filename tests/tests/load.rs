//! Load (issue 6): 200 containers started by 8 concurrent CLI clients on one bridge
//! network. Every start succeeds or fails cleanly, no address is handed out twice,
//! `system status` answers throughout, and everything is torn down clean afterwards.
//! The figures printed here are reported in docs/load.md; they are not asserted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use container_tests::{busybox_rootfs, World};

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 25;

#[test]
fn two_hundred_containers_from_eight_clients() {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver();
    world.ok(&["network", "create", "--subnet", "10.95.0.0/24", "load"]);
    let world = Arc::new(world);

    // Poll status all along; remember the slowest answer.
    let stop = Arc::new(AtomicBool::new(false));
    let status_times = Arc::new(Mutex::new(Vec::new()));
    let poller = {
        let (world, stop, times) = (world.clone(), stop.clone(), status_times.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let out = world.cli(&["system", "status", "--format", "json"]);
                assert!(
                    out.status.success(),
                    "status failed under load: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                times.lock().expect("lock").push(t.elapsed());
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let started = Instant::now();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (world, rootfs, failures) = (world.clone(), rootfs.clone(), failures.clone());
            std::thread::spawn(move || {
                for i in 0..PER_CLIENT {
                    let name = format!("l{c}-{i}");
                    let out = world.cli(&[
                        "run",
                        "-d",
                        "--name",
                        &name,
                        "--network",
                        "load",
                        "--rootfs",
                        &rootfs,
                        "--",
                        "sleep",
                        "1000",
                    ]);
                    if !out.status.success() {
                        let err = String::from_utf8_lossy(&out.stderr).into_owned();
                        assert_eq!(
                            err.trim_end().lines().count(),
                            1,
                            "a failure is one clear line: {err}"
                        );
                        failures.lock().expect("lock").push((name, err));
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let start_time = started.elapsed();

    let list = world.json(&["ls", "--format", "json"]);
    let running = list.as_array().expect("list").len();
    let failed = failures.lock().expect("lock").clone();
    assert_eq!(running + failed.len(), CLIENTS * PER_CLIENT);
    assert!(failed.is_empty(), "starts failed: {failed:?}");
    let mut seen = std::collections::HashSet::new();
    for c in list.as_array().expect("list") {
        for a in c["addresses"].as_array().expect("addresses") {
            assert!(seen.insert(a.to_string()), "address {a} handed out twice");
        }
    }
    assert_eq!(seen.len(), running);
    let reservations = std::fs::read_dir(world.root().join("ipam/load"))
        .expect("ipam")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .parse::<std::net::IpAddr>()
                .is_ok()
        })
        .count();
    assert_eq!(
        reservations, running,
        "one reservation file per running container"
    );

    let removing = Instant::now();
    let ids: Vec<String> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    let removers: Vec<_> = ids
        .chunks(ids.len().div_ceil(CLIENTS))
        .map(|chunk| {
            let world = world.clone();
            let mut args = vec!["rm".to_string(), "-f".to_string()];
            args.extend(chunk.iter().cloned());
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                world.ok(&args);
            })
        })
        .collect();
    for r in removers {
        r.join().expect("remover");
    }
    let remove_time = removing.elapsed();
    stop.store(true, Ordering::Relaxed);
    poller.join().expect("poller");

    let check = world.cli(&["system", "check"]);
    assert!(
        check.status.success(),
        "not clean after teardown: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(world
        .json(&["ls", "-a", "--format", "json"])
        .as_array()
        .is_some_and(|a| a.is_empty()));
    let mut times = status_times.lock().expect("lock").clone();
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let max = times.last().copied().unwrap_or_default();
    println!(
        "load: {running} containers by {CLIENTS} clients started in {:.1} s ({:.1}/s), removed in {:.1} s; \
         system status answered {} times during the run, median {:.0} ms, max {:.0} ms",
        start_time.as_secs_f64(),
        running as f64 / start_time.as_secs_f64(),
        remove_time.as_secs_f64(),
        times.len(),
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
}
