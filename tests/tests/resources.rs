//! Issue 10's resources end to end, on this machine's kernel: cgroup limits and their
//! cgroup's life, a fork bomb and a memory hog contained, a double-forked daemon gone
//! with `stop`, device rules, rlimits, `--userns=auto` with a network and a published
//! port, `stats`, `system check`, and bad values refused with nothing made. Each world
//! has its own cgroup parent (`World::cgroups`), removed with it.

use std::path::PathBuf;

use container_tests::*;

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn inspect(w: &World, id: &str) -> serde_json::Value {
    w.json(&["inspect", id])[0].clone()
}

/// The container's directory in the v1 hierarchy of `controller` (or cgroup2).
fn cgroup_dir(w: &World, controller: &str, id: &str) -> PathBuf {
    let base = PathBuf::from("/sys/fs/cgroup").join(controller);
    base.join(w.cgroups.name()).join(id)
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Every cgroup of this world, in any hierarchy.
fn cgroups_of(w: &World) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        if let Ok(entries) = std::fs::read_dir(h.path().join(w.cgroups.name())) {
            out.extend(
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path()),
            );
        }
    }
    out
}

fn v1(controller: &str) -> bool {
    PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join("tasks")
        .exists()
}

#[test]
fn limits_apply_exec_joins_the_cgroup_and_the_cgroup_goes_with_the_container() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "run",
        "-d",
        "--name",
        "lim",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--pids-limit",
        "100",
        "--ulimit",
        "nofile=1000:2000",
        "--oom-score-adj",
        "300",
        "--rootfs",
        &s.rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    let c = inspect(w, "lim");
    let r = &c["config"]["resources"];
    assert_eq!(r["memory"], 64 << 20);
    assert_eq!(r["nano_cpus"], 500_000_000u64);
    assert_eq!(r["pids_limit"], 100);
    let rel = format!("{}/lim", w.cgroups.name());
    assert_eq!(c["state"]["cgroup"], rel.as_str());
    let nproc = r["ulimits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "nproc");
    assert!(nproc.is_some(), "the default NPROC is recorded: {r}");
    if v1("memory") {
        assert_eq!(
            read(cgroup_dir(w, "memory", "lim").join("memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read(cgroup_dir(w, "cpu", "lim").join("cpu.cfs_quota_us")),
            "50000"
        );
        assert_eq!(read(cgroup_dir(w, "cpu", "lim").join("cpu.shares")), "512");
        assert_eq!(read(cgroup_dir(w, "pids", "lim").join("pids.max")), "100");
    }
    // The workload and an exec'd process: the same cgroup, limits and OOM score.
    let workload_pid = c["state"]["pid"].as_u64().unwrap();
    let procs = read(cgroup_dir(w, "pids", "lim").join("cgroup.procs"));
    assert!(
        procs.lines().any(|p| p == workload_pid.to_string()),
        "{procs}"
    );
    let out = w.ok(&[
        "exec",
        "lim",
        "sh",
        "-c",
        "cat /proc/self/cgroup; ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj",
    ]);
    assert!(out.contains(&format!("memory:/{rel}")), "{out}");
    // cgroup2 where the container joins it; else the v1 freezer that kills it.
    if container_cgroups::Layout::detect().unwrap().joins_unified() {
        assert!(out.contains(&format!("0::/{rel}")), "{out}");
    } else {
        assert!(out.contains(&format!("freezer:/{rel}")), "{out}");
        assert!(!out.contains(&format!("0::/{rel}")), "{out}");
    }
    assert!(out.contains("\n1000\n2000\n300"), "{out}");
    let status = read(PathBuf::from(format!("/proc/{workload_pid}/limits")));
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains("1000") && l.contains("2000")),
        "{status}"
    );
    w.ok(&["rm", "-f", "lim"]);
    assert!(cgroups_of(w).is_empty(), "{:?}", cgroups_of(w));
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "run",
        "-d",
        "--name",
        "bomb",
        "--pids-limit",
        "20",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        // The bomb is a subshell: busybox sh gives up at its first refused fork, and
        // the container's PID 1 goes on.
        "(while :; do sleep 1000 & done) 2>/dev/null; echo contained; sleep 1000",
    ]);
    let dir = cgroup_dir(w, "pids", "bomb");
    eventually("the bomb to reach the limit", || {
        w.ok(&["logs", "bomb"]).contains("contained")
    });
    let current: u64 = read(dir.join("pids.current")).parse().unwrap();
    assert!(current <= 20, "{current} tasks under a limit of 20");
    let events = read(dir.join("pids.events"));
    let refused: u64 = events.trim_start_matches("max ").parse().unwrap_or(0);
    assert!(refused > 0, "forks were refused: {events}");
    // The container itself is alive and answers.
    assert_eq!(inspect(w, "bomb")["state"]["status"], "running");
    w.ok(&["rm", "-f", "bomb"]);
    assert!(cgroups_of(w).is_empty());
}

#[test]
fn a_memory_hog_is_oom_killed_and_inspect_says_so() {
    let s = setup();
    let w = &s.world;
    let hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived";
    let out = w.cli(&[
        "run",
        "--name",
        "hog",
        "--network",
        "none",
        "--memory",
        "16m",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        hog,
    ]);
    assert_eq!(code(&out), 137, "{}", String::from_utf8_lossy(&out.stdout));
    let state = &inspect(w, "hog")["state"];
    assert_eq!(state["exit_code"], 137);
    assert_eq!(state["oom_killed"], true, "{state}");
    // A plain SIGKILL is no OOM kill.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "killed",
        "--network",
        "none",
        "--rootfs",
        &s.rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    w.ok(&["kill", "killed"]);
    eventually("killed stopped", || {
        inspect(w, "killed")["state"]["status"] == "stopped"
    });
    let state = &inspect(w, "killed")["state"];
    assert_eq!(
        (state["exit_code"].clone(), state["oom_killed"].clone()),
        (137.into(), false.into())
    );
}

#[test]
fn a_double_forked_daemon_does_not_outlive_stop() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "run",
        "-d",
        "--name",
        "d",
        "--network",
        "none",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "(setsid sleep 1000 &); trap 'exit 0' TERM; while :; do sleep 1; done",
    ]);
    let procs = cgroup_dir(w, "pids", "d").join("cgroup.procs");
    eventually("the daemon", || read(procs.clone()).lines().count() >= 3);
    let pids: Vec<u32> = read(procs).lines().map(|l| l.parse().unwrap()).collect();
    w.ok(&["stop", "-t", "5", "d"]);
    for pid in &pids {
        eventually("every process of the cgroup gone", || !alive(*pid));
    }
    assert!(cgroups_of(w).is_empty(), "{:?}", cgroups_of(w));
}

/// A block device of this host.
fn host_block_device() -> (String, u32, u32) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for e in std::fs::read_dir("/dev").unwrap().flatten() {
        let m = e.metadata().unwrap();
        if m.file_type().is_block_device() {
            let r = m.rdev();
            return (e.path().display().to_string(), libc_major(r), libc_minor(r));
        }
    }
    panic!("no block device");
}

fn libc_major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}
fn libc_minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

#[test]
fn a_block_device_made_by_mknod_cannot_be_read_and_device_gives_one() {
    let s = setup();
    let w = &s.world;
    let (host, major, minor) = host_block_device();
    let out = w.cli(&[
        "run", "--rm", "--network", "none", "--rootfs", &s.rootfs, "--", "sh", "-c",
        &format!("mknod /tmp/blk b {major} {minor} && echo made && head -c 512 /tmp/blk >/dev/null && echo read"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("made"),
        "mknod is allowed: {stdout} {stderr}"
    );
    assert!(!stdout.contains("read"), "a host block device was read");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    // The default devices work; --device gives exactly what it names.
    let out = w.ok(&[
        "run", "--rm", "--network", "none", "--device", &format!("{host}:/dev/disk0:r"),
        "--rootfs", &s.rootfs, "--", "sh", "-c",
        "head -c 1 /dev/urandom >/dev/null && echo >/dev/null && head -c 512 /dev/disk0 >/dev/null && echo read; echo x > /dev/disk0 || echo nowrite",
    ]);
    assert!(out.contains("read") && out.contains("nowrite"), "{out}");
}

/// What exists for containers in this world: records, netns mounts, IPAM
/// reservations, cgroups, userns ranges.
fn made(w: &World) -> Vec<String> {
    let mut out = Vec::new();
    for dir in [
        w.root().join("containers"),
        w.run_dir().join("netns"),
        w.root().join("ipam/default"),
        w.root().join("userns"),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with("last_reserved") && name != "lock" {
                    out.push(e.path().display().to_string());
                }
            }
        }
    }
    out.extend(cgroups_of(w).iter().map(|p| p.display().to_string()));
    out
}

#[test]
fn bad_resource_values_are_refused_naming_them_with_nothing_made() {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    // One range in the pool: the second --userns=auto container finds none free.
    world.start_apiserver_with(&[("CONTAINER_USERNS_POOL", "2000000000:65536")]);
    let w = &world;
    w.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--userns",
        "auto",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    let before = made(w);
    for (flags, named) in [
        (vec!["--memory", "10"], "memory 10"),
        (vec!["--cpus", "-1"], "--cpus \"-1\""),
        (vec!["--pids-limit", "abc"], "--pids-limit \"abc\""),
        (vec!["--device", "/nonexistent"], "/nonexistent"),
        (vec!["--memory-swap", "1g"], "memory-swap"),
        (vec!["--ulimit", "nofile=10:5"], "nofile"),
        (vec!["--cpus", "99999"], "cpus 99999"),
        (vec!["--userns", "auto"], "no free user namespace range"),
    ] {
        let mut args = vec!["run", "--rm", "--name", "bad"];
        args.extend(flags.iter().copied());
        args.extend(["--rootfs", rootfs.as_str(), "--", "true"]);
        let out = w.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 125, "{flags:?}: {err}");
        assert!(err.contains(named), "{flags:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert_eq!(made(w), before, "{flags:?} made something");
    }
    w.ok(&["rm", "-f", "holder"]);
    assert!(made(w).is_empty(), "{:?}", made(w));
}

#[test]
fn userns_auto_maps_root_to_a_range_of_its_own_with_a_network_and_a_port() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "run",
        "-d",
        "--name",
        "u1",
        "--userns",
        "auto",
        "-p",
        "8088:80",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "touch /dev/shm/mine /tmp/rootfile; while true; do echo hello | nc -l -p 80; done",
    ]);
    w.ok(&[
        "run", "-d", "--name", "u2", "--userns", "auto", "--rootfs", &s.rootfs, "--", "sleep",
        "1000",
    ]);
    // A port below 1024, bound by the namespace's root, published on the host.
    assert_eq!(read_from("127.0.0.1:8088").trim(), "hello");
    let (a, b) = (inspect(w, "u1"), inspect(w, "u2"));
    assert_eq!(a["config"]["userns"], "auto");
    let start = a["state"]["userns"]["start"].as_u64().unwrap();
    let other = b["state"]["userns"]["start"].as_u64().unwrap();
    assert!(start >= 65_536 && other >= 65_536, "{start} {other}");
    assert!(
        start.abs_diff(other) >= 65_536,
        "ranges overlap: {start} {other}"
    );
    // Inside: root. Outside: the range's first id.
    let out = w.ok(&[
        "exec",
        "u1",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; stat -c %u /etc/passwd",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", &start.to_string(), "65536"]
    );
    assert_eq!(
        lines[2], "0",
        "the root filesystem's files are root's inside (idmapped)"
    );
    let pid = a["state"]["pid"].as_u64().unwrap();
    let status = read(PathBuf::from(format!("/proc/{pid}/status")));
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == start.to_string()),
        "{uid_line}"
    );
    use std::os::unix::fs::MetadataExt;
    let shm = std::fs::metadata(format!("/proc/{pid}/root/dev/shm/mine")).unwrap();
    assert_eq!(
        u64::from(shm.uid()),
        start,
        "its files are a high uid outside"
    );
    // The root filesystem is not chowned: what it writes there is 0 on disk.
    let on_disk = std::fs::metadata(PathBuf::from(&s.rootfs).join("tmp/rootfile")).unwrap();
    assert_eq!(on_disk.uid(), 0);
    let passwd = std::fs::metadata(PathBuf::from(&s.rootfs).join("etc/passwd")).unwrap();
    assert_eq!(passwd.uid(), 0);
    w.ok(&["rm", "-f", "u1", "u2"]);
    let left: Vec<_> = std::fs::read_dir(w.root().join("userns"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "lock")
        .collect();
    assert!(left.is_empty(), "ranges released: {left:?}");
}

#[test]
fn an_apiserver_default_of_auto_and_old_records_load_as_host() {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver_with(&[("CONTAINER_USERNS_DEFAULT", "auto")]);
    let w = &world;
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "cat",
        "/proc/self/uid_map",
    ]);
    assert!(!out.contains("4294967295"), "a range of its own: {out}");
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--userns",
        "host",
        "--rootfs",
        &rootfs,
        "--",
        "cat",
        "/proc/self/uid_map",
    ]);
    assert!(out.contains("4294967295"), "the host's ids: {out}");
    // A record written before issue 10: no resources, no userns.
    w.ok(&[
        "create",
        "--name",
        "old",
        "--network",
        "none",
        "--rootfs",
        &rootfs,
        "--",
        "sh",
        "-c",
        "cat /proc/self/uid_map; cat /proc/self/cgroup",
    ]);
    let path = w.root().join("containers/old/config.json");
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    record.as_object_mut().unwrap().remove("resources");
    record.as_object_mut().unwrap().remove("userns");
    // Written while the apiserver is down: it reads records from disk only at start.
    world.ok(&["system", "stop"]);
    world.kill_apiserver();
    std::fs::write(&path, serde_json::to_string(&record).unwrap()).unwrap();
    world.start_apiserver_with(&[("CONTAINER_USERNS_DEFAULT", "auto")]);
    let w = &world;
    let out = w.ok(&["start", "-a", "old"]);
    assert!(
        out.contains("4294967295"),
        "an old record runs with the host's ids: {out}"
    );
    assert!(
        out.contains(&format!("/{}/old", w.cgroups.name())),
        "and in a cgroup: {out}"
    );
    assert_eq!(
        inspect(w, "old")["config"]["resources"]["memory"],
        serde_json::Value::Null
    );
}

#[test]
fn stats_reads_cpu_memory_pids_and_network() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--memory",
        "64m",
        "--rootfs",
        &s.rootfs,
        "--",
        "sh",
        "-c",
        "nc -w1 10.88.0.1 9 </dev/null; while :; do :; done",
    ]);
    // A TCP connect to a closed port (Debian's busybox `nc` has no `-u`): its ARP
    // and SYN are what the container sends, as its interface has no IPv6 to chatter
    // with. `run -d` returns once the workload runs, not once they left: read again.
    let stats_of_busy = || {
        let j = w.json(&["stats", "--no-stream", "--format", "json"]);
        j.as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == "busy")
            .unwrap()
            .clone()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut line = stats_of_busy();
    while line["net_tx_bytes"].as_u64() == Some(0) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        line = stats_of_busy();
    }
    assert!(line["cpu_percent"].as_f64().unwrap() > 10.0, "{line}");
    assert_eq!(line["memory_limit"], 64 << 20);
    assert!(line["memory_usage"].as_u64().unwrap() > 0, "{line}");
    assert!(line["pids"].as_u64().unwrap() >= 1, "{line}");
    assert!(line["net_tx_bytes"].as_u64().unwrap() > 0, "{line}");
    let table = w.ok(&["stats", "--no-stream", "busy"]);
    assert!(
        table.starts_with("CONTAINER") && table.contains("busy") && table.contains("64.0MiB"),
        "{table}"
    );
    let err = w.fails(&["stats", "--no-stream", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    w.ok(&["rm", "-f", "busy"]);
}

#[test]
fn system_check_reports_a_leaked_cgroup_and_range_and_fix_removes_them() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "--userns",
        "auto",
        "--network",
        "none",
        "--rootfs",
        &s.rootfs,
        "--",
        "sleep",
        "1000",
    ]);
    let out = w.cli(&["system", "check"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    // What a crash could leave: a cgroup and a range nobody runs under.
    for h in ["memory", "pids", "unified"] {
        let dir = PathBuf::from("/sys/fs/cgroup")
            .join(h)
            .join(w.cgroups.name())
            .join("ghost");
        if dir.parent().is_some_and(|p| p.exists()) {
            std::fs::create_dir(&dir).unwrap();
        }
    }
    std::fs::write(w.root().join("userns/3000000000-65536"), "ghost\n").unwrap();
    let out = w.cli(&["system", "check", "--format", "json"]);
    assert_eq!(code(&out), 1);
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"cgroup") && kinds.contains(&"userns-range"),
        "{found}"
    );
    assert!(
        !found.to_string().contains("/live"),
        "a running container's cgroup is no leak: {found}"
    );
    w.cli(&["system", "check", "--fix"]);
    let out = w.cli(&["system", "check"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        cgroups_of(w)
            .iter()
            .filter(|p| p.ends_with("ghost"))
            .count(),
        0
    );
    w.ok(&["rm", "-f", "live"]);
}
