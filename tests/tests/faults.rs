//! Crash safety (issue 6): kill any process of the runtime at any moment, restart what
//! died the way a supervisor would, and nothing leaks, nothing is held twice, every
//! container's state is true, every record still loads.
//!
//! `fault_points_*` arms each named fault point in turn (`CONTAINER_FAULT`), which makes
//! the process that reaches it SIGKILL itself. `random_sigkills` kills random processes
//! (the apiserver, helpers, and the client itself) and stops helpers at random times
//! during random operations (runs, stops, removals, network create and rm, GC, check
//! --fix); `client_kills_at_every_step` kills the client of each operation at growing
//! delays. `cargo xtask soak --iterations N` runs the random test longer. After each,
//! `system check` is clean and nothing is left that ps, the links, the mounts or the
//! state root would show.

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

/// Helpers that stop answering cost this long per call here.
const CALL_TIMEOUT: (&str, &str) = ("CONTAINER_CALL_TIMEOUT_MS", "1000");

/// Restarts the apiserver, without faults, if it died: the supervisor's job.
fn supervise(world: &mut World) -> bool {
    if world.apiserver_alive() {
        return false;
    }
    world.start_apiserver_with(&[CALL_TIMEOUT]);
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

/// Waits until no operation is in flight (those of killed clients run on) and no
/// container is mid-flight: every `running` one has a live workload.
fn settle(world: &mut World) {
    let deadline = Instant::now() + HANG;
    loop {
        supervise(world);
        let status = world.cli(&["system", "status", "--format", "json"]);
        let busy = !status.status.success()
            || serde_json::from_slice::<serde_json::Value>(&status.stdout)
                .map(|s| s["operations"].as_array().is_some_and(|o| !o.is_empty()))
                .unwrap_or(true);
        if busy {
            assert!(
                Instant::now() < deadline,
                "operations never ended\n{}",
                world.apiserver_log()
            );
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
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
    assert_no_leftovers(world, context);
}

/// What the kernel and the disk show, judged against the records: no helper process,
/// netns mount, host veth or reservation that no running container (or listed network)
/// accounts for, and no temporary file in the state root.
fn assert_no_leftovers(world: &World, context: &str) {
    let list = world.json(&["ls", "-a", "--format", "json"]);
    let running: std::collections::HashSet<String> = list
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["status"] == "running")
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    let networks: std::collections::HashSet<String> = world
        .json(&["network", "ls", "--format", "json"])
        .as_array()
        .expect("networks")
        .iter()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect();
    // Processes: by their command line, whatever their pid files say.
    let run = format!("--run-dir\0{}\0", world.run_dir().display());
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(p.path().join("cmdline")).unwrap_or_default())
                .into_owned();
        if !cmdline.contains(&run) || !alive(pid) {
            continue;
        }
        let id = cmdline
            .split("--id\0")
            .nth(1)
            .and_then(|r| r.split('\0').next())
            .unwrap_or("");
        if cmdline.contains("container-sandbox-helper") {
            assert!(
                running.contains(id),
                "{context}: sandbox helper {pid} for {id:?}, which is not running"
            );
        } else if cmdline.contains("container-network-helper") {
            assert!(
                networks.contains(id),
                "{context}: network helper {pid} for {id:?}, which is not listed"
            );
        }
    }
    // Mounts: only running containers' netns.
    let netns = format!("{}/", world.run_dir().join("netns").display());
    for line in std::fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        if let Some(rest) = line
            .split_whitespace()
            .nth(4)
            .and_then(|m| m.strip_prefix(&netns))
        {
            assert!(
                running.contains(rest),
                "{context}: netns mount of {rest}, which is not running"
            );
        }
    }
    // Host veth ends of containers that are not running (a stopped container's pair
    // goes with its namespace in the kernel's background cleanup: give it a moment).
    let owned: std::collections::HashSet<String> = running
        .iter()
        .flat_map(|id| {
            // It may finish (a `--rm` run) between the listing and now.
            let out = world.cli(&["inspect", id]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| v[0]["state"]["interfaces"].as_array().cloned())
                .unwrap_or_default()
        })
        .filter_map(|i| i["host_ifname"].as_str().map(str::to_string))
        .collect();
    let stray = || -> Vec<String> {
        container_tests::links()
            .into_iter()
            .filter(|l| l.starts_with("veth") && !owned.contains(l))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stray().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        stray().is_empty(),
        "{context}: host links of no running container: {:?}",
        stray()
    );
    // State root: reservations of running containers only, and no temporary file.
    for net in std::fs::read_dir(world.root().join("ipam"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.parse::<std::net::IpAddr>().is_ok() {
                let holder = std::fs::read_to_string(f.path()).unwrap_or_default();
                let holder = holder.lines().next().unwrap_or("").trim().to_string();
                assert!(
                    running.contains(&holder),
                    "{context}: {} reserved for {holder:?}, which is not running",
                    f.path().display()
                );
            }
        }
    }
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    let mut files = Vec::new();
    walk(&world.root(), &mut files);
    let temps: Vec<_> = files.iter().filter(|f| f.contains(".tmp.")).collect();
    assert!(
        temps.is_empty(),
        "{context}: temporary files left: {temps:?}"
    );
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
        &["volume", "create", "fvol"],
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
            CALL_TIMEOUT,
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
        world.start_apiserver_with(&[CALL_TIMEOUT]);
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
    world.start_apiserver_with(&[CALL_TIMEOUT]);
    world.ok(&["network", "create", "--subnet", "10.91.0.0/24", "soak"]);
    let mut kills = 0;
    let mut stopped: Vec<i32> = Vec::new();
    for i in 0..iterations {
        let name = format!("s{i}");
        let other = format!("s{}", rng.below(i + 1));
        let extra = format!("x{}", rng.below(3));
        let subnet = format!("10.92.{}.0/24", &extra[1..]);
        let op: Vec<String> = match rng.below(9) {
            0 | 1 => vec![
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
            2 => vec![
                "run",
                "--rm",
                "--network",
                "soak",
                "--rootfs",
                &rootfs,
                "--",
                "true",
            ],
            3 => vec!["rm", "-f", &other],
            4 => vec!["stop", "-t", "0", &other],
            5 => vec!["network", "gc"],
            6 => vec!["system", "check", "--fix"],
            7 => vec!["network", "create", "--subnet", &subnet, &extra],
            _ => vec!["network", "rm", &extra],
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
        let pick = |rng: &mut Rng, kind: &str| {
            let p = pids_of(&world, kind);
            (!p.is_empty()).then(|| p[rng.below(p.len() as u64) as usize])
        };
        let (victim, signal) = match rng.below(5) {
            0 => (
                world.apiserver.as_ref().map(|c| c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            ),
            1 => (pick(&mut rng, "network"), nix::sys::signal::Signal::SIGKILL),
            2 => (pick(&mut rng, "sandbox"), nix::sys::signal::Signal::SIGKILL),
            // The client goes away: Ctrl-C or a kill.
            3 => (Some(child.id() as i32), nix::sys::signal::Signal::SIGKILL),
            // A helper stops answering for a while.
            _ => {
                let kind = if rng.below(2) == 0 {
                    "network"
                } else {
                    "sandbox"
                };
                (pick(&mut rng, kind), nix::sys::signal::Signal::SIGSTOP)
            }
        };
        if let Some(pid) = victim {
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).is_ok() {
                kills += 1;
                if signal == nix::sys::signal::Signal::SIGSTOP {
                    stopped.push(pid);
                }
            }
        }
        finish(&mut child);
        // Stopped helpers come back a little later (or are killed by an escalation).
        if rng.below(2) == 0 {
            for pid in stopped.drain(..) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGCONT,
                );
            }
        }
        supervise(&mut world);
    }
    for pid in stopped.drain(..) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGCONT,
        );
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
    println!(
        "random sigkills: {kills} processes killed or stopped in {iterations} operations, all survived"
    );
}

/// The client of each step of start, stop, rm and network rm killed at growing delays:
/// each operation ends whole or undone, never half.
#[test]
fn client_kills_at_every_step() {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver_with(&[CALL_TIMEOUT]);
    let mut round = 0;
    for delay_ms in [0u64, 3, 8, 15, 30, 60] {
        round += 1;
        let net = format!("ck{round}");
        world.ok(&[
            "network",
            "create",
            "--subnet",
            &format!("10.93.{round}.0/24"),
            &net,
        ]);
        let name = format!("k{round}");
        let steps: Vec<Vec<String>> = vec![
            vec![
                "create",
                "--name",
                &name,
                "--network",
                &net,
                "--rootfs",
                &rootfs,
                "--",
                "sleep",
                "1000",
            ],
            vec!["start", &name],
            vec!["stop", "-t", "0", &name],
            vec!["start", &name],
            vec!["rm", "-f", &name],
            vec![
                "run",
                "--rm",
                "--network",
                &net,
                "--rootfs",
                &rootfs,
                "--",
                "true",
            ],
            vec!["rm", "-f", &name],
            vec!["network", "rm", &net],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(str::to_string).collect())
        .collect();
        for step in &steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            let mut child = world
                .cli_command(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn");
            std::thread::sleep(Duration::from_millis(delay_ms));
            let _ = child.kill();
            finish(&mut child);
        }
        assert_consistent(&mut world, &format!("client killed after {delay_ms} ms"));
        // Whatever was left half (or never begun) can still be finished by hand.
        let _ = world.cli(&["rm", "-f", &name]);
        let _ = world.cli(&["network", "rm", &net]);
        assert_consistent(&mut world, &format!("cleaned up after {delay_ms} ms"));
    }
}
