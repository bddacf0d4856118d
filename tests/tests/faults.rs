//! Crash safety (issue 6): kill any process of the runtime at any moment, restart what
//! died the way a supervisor would, and nothing leaks, nothing is held twice, every
//! container's state is true, every record still loads.
//!
//! `fault_points_*` arms each named fault point in turn (`CONTAINER_FAULT`), which makes
//! the process that reaches it SIGKILL itself. `random_sigkills` kills random processes
//! at random times during random operations; `cargo xtask soak --iterations N` runs it
//! longer.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use container_protocol::fault::POINTS;
use container_tests::{alive, busybox_rootfs, World, HANG};

/// xorshift64*: deterministic, so a failing seed can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Restarts the apiserver, without faults, if it died: the supervisor's job.
fn supervise(world: &mut World) -> bool {
    if world.apiserver_alive() {
        return false;
    }
    world.start_apiserver();
    true
}

/// Runs one CLI command to completion, bounded, ignoring its outcome (a crash in the
/// middle of it is the point).
fn attempt(world: &World, args: &[&str]) {
    let mut child = world
        .cli_command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn container");
    finish(&mut child);
}

fn finish(child: &mut Child) {
    let deadline = Instant::now() + HANG;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a CLI call hung for {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until no container is mid-flight: every `running` one has a live workload.
fn settle(world: &mut World) {
    let deadline = Instant::now() + HANG;
    loop {
        supervise(world);
        let out = world.cli(&["ls", "-a", "--format", "json"]);
        if out.status.success() {
            let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls json");
            let in_flight = list
                .as_array()
                .map(|a| {
                    a.iter()
                        .any(|c| c["status"] == "running" && c["pid"].is_null())
                })
                .unwrap_or(true);
            if !in_flight {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "containers never settled\n{}",
            world.apiserver_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The promise, checked from the outside.
fn assert_consistent(world: &mut World, context: &str) {
    settle(world);
    let check = world.cli(&["system", "check", "--format", "json"]);
    let findings = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        check.status.success(),
        "{context}: system check is not clean: {findings}{}\n--- apiserver log ---\n{}",
        String::from_utf8_lossy(&check.stderr),
        world.apiserver_log()
    );
    // Every record loads, and every running container really runs.
    let list = world.json(&["ls", "-a", "--format", "json"]);
    let mut held = std::collections::HashSet::new();
    for c in list.as_array().expect("list") {
        let id = c["id"].as_str().expect("id");
        let record = &world.json(&["inspect", id])[0];
        let state = &record["state"];
        match state["status"].as_str() {
            Some("running") => {
                let helper = state["helper_pid"].as_u64().expect("running has a helper") as u32;
                let pid = state["pid"].as_u64().expect("running has a pid") as u32;
                assert!(
                    alive(helper) && alive(pid),
                    "{context}: {id} reads running but is not"
                );
                for a in state["allocations"].as_array().expect("allocations") {
                    for addr in a["addresses"].as_array().expect("addresses") {
                        let key = format!("{}/{}", a["network"], addr);
                        assert!(held.insert(key.clone()), "{context}: {key} held twice");
                    }
                }
            }
            Some("stopped") | Some("created") => {
                assert!(
                    state["allocations"].as_array().is_none_or(|a| a.is_empty()),
                    "{context}: {id} holds addresses while not running"
                );
            }
            other => panic!("{context}: {id} has status {other:?}"),
        }
    }
    world.json(&["network", "ls", "--format", "json"]);
}

fn fault_log(world: &World) -> std::path::PathBuf {
    world.iso.dir().join("faults.log")
}

fn faults_seen(world: &World) -> usize {
    std::fs::read_to_string(fault_log(world))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn kill_armed_helpers(world: &World) {
    for kind in ["network", "sandbox"] {
        for pid in pids_of(world, kind) {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let armed = environ.split(|b| *b == 0).any(|v| {
                v.starts_with(container_protocol::fault::FAULT_ENV.as_bytes())
                    && v.get(container_protocol::fault::FAULT_ENV.len()) == Some(&b'=')
            });
            if armed {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn scenario(world: &mut World, rootfs: &str) {
    let steps: &[&[&str]] = &[
        &["network", "create", "--subnet", "10.90.0.0/24", "fnet"],
        &[
            "run",
            "-d",
            "--name",
            "a",
            "--network",
            "fnet",
            "--rootfs",
            rootfs,
            "--",
            "sleep",
            "1000",
        ],
        &[
            "run",
            "--rm",
            "--network",
            "fnet",
            "--rootfs",
            rootfs,
            "--",
            "true",
        ],
        &[
            "run",
            "-d",
            "--name",
            "b",
            "--network",
            "fnet",
            "--network",
            "default",
            "--rootfs",
            rootfs,
            "--",
            "sleep",
            "1000",
        ],
        &["stop", "-t", "0", "a"],
        &["rm", "-f", "a", "b"],
        &["network", "rm", "fnet"],
    ];
    for step in steps {
        attempt(world, step);
        supervise(world);
    }
}

fn run_fault_points(points: &[&str]) {
    let mut injected = 0;
    for point in points {
        let mut world = World::new();
        let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
        let log = fault_log(&world).display().to_string();
        world.start_apiserver_with(&[
            (container_protocol::fault::FAULT_ENV, point),
            (container_protocol::fault::FAULT_LOG_ENV, &log),
        ]);
        scenario(&mut world, &rootfs);
        let seen = faults_seen(&world);
        assert!(seen > 0, "fault point {point} was never reached");
        injected += seen;
        // Restart the apiserver without the fault. Helpers it started still carry the
        // armed variable and would trip again: they crash now instead (one more SIGKILL
        // the runtime must survive), so what follows runs unarmed.
        world.kill_apiserver();
        kill_armed_helpers(&world);
        world.start_apiserver();
        assert_consistent(&mut world, point);
        // And the runtime still works.
        world.ok(&["run", "--rm", "--rootfs", &rootfs, "--", "true"]);
        assert_consistent(&mut world, &format!("{point}, after a run"));
    }
    println!(
        "fault points: {injected} faults injected across {} points, all survived",
        points.len()
    );
}

#[test]
fn fault_points_in_the_apiserver() {
    let points: Vec<&str> = POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("apiserver:"))
        .collect();
    run_fault_points(&points);
}

#[test]
fn fault_points_in_the_helpers() {
    let points: Vec<&str> = POINTS
        .iter()
        .copied()
        .filter(|p| !p.starts_with("apiserver:"))
        .collect();
    run_fault_points(&points);
}

fn pids_of(world: &World, kind: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(world.run_dir().join("helpers").join(kind)) else {
        return vec![];
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        .collect()
}

#[test]
fn random_sigkills_of_every_process_kind() {
    let iterations: u64 = std::env::var("SOAK_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1234);
    println!("random sigkills: seed {seed}, {iterations} iterations");
    let mut rng = Rng(seed | 1);
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver();
    world.ok(&["network", "create", "--subnet", "10.91.0.0/24", "soak"]);
    let mut kills = 0;
    for i in 0..iterations {
        let name = format!("s{i}");
        let other = format!("s{}", rng.below(i + 1));
        let op: Vec<String> = match rng.below(5) {
            0 => vec![
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                "soak",
                "--rootfs",
                &rootfs,
                "--",
                "sleep",
                "1000",
            ],
            1 => vec![
                "run",
                "--rm",
                "--network",
                "soak",
                "--rootfs",
                &rootfs,
                "--",
                "true",
            ],
            2 => vec!["rm", "-f", &other],
            3 => vec!["stop", "-t", "0", &other],
            _ => vec!["network", "gc"],
        }
        .into_iter()
        .map(str::to_string)
        .collect();
        let args: Vec<&str> = op.iter().map(String::as_str).collect();
        let mut child = world
            .cli_command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(rng.below(120)));
        let victim = match rng.below(3) {
            0 => world.apiserver.as_ref().map(|c| c.id() as i32),
            1 => {
                let p = pids_of(&world, "network");
                (!p.is_empty()).then(|| p[rng.below(p.len() as u64) as usize])
            }
            _ => {
                let p = pids_of(&world, "sandbox");
                (!p.is_empty()).then(|| p[rng.below(p.len() as u64) as usize])
            }
        };
        if let Some(pid) = victim {
            if nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                kills += 1;
            }
        }
        finish(&mut child);
        supervise(&mut world);
    }
    assert_consistent(&mut world, &format!("seed {seed}"));
    world.ok(&[
        "run",
        "--rm",
        "--network",
        "soak",
        "--rootfs",
        &rootfs,
        "--",
        "true",
    ]);
    assert_consistent(&mut world, &format!("seed {seed}, after a run"));
    println!("random sigkills: {kills} processes killed in {iterations} operations, all survived");
}
