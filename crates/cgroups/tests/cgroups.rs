//! The cgroup module against this machine's kernel, always under a parent of the
//! test's own (`CgroupParent`), removed at the end even on failure. Here the host is
//! hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified with none): the v1 paths
//! run whole; the v2 paths run as far as a controller-less cgroup2 lets them:
//! placement, `cgroup.kill`, removal, the eBPF device filter, CPU time. Limits on v2
//! (memory.max, pids.max, cpu.max) need controllers this cgroup2 does not have.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use container_cgroups::{Cgroup, DeviceRule, Layout, Limits, DEFAULT_RULES};
use container_testkit::{isolate, CgroupParent};

/// Starts `sh -c script` inside `cg`: the child joins by writing `0` into the
/// pre-opened join files (`Cgroup::procs_files`), as the sandbox's launch plan does.
fn spawn_in(cg: &Cgroup, script: &str) -> std::process::Child {
    let procs: Vec<OwnedFd> = cg.procs_files().expect("open the join files");
    let raw: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: write(2) of a static buffer only.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &raw {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn in cgroup");
    drop(procs);
    child
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A block device of this host (the disk under /), by number.
fn host_block_device() -> (u32, u32) {
    for entry in std::fs::read_dir("/dev").expect("read /dev").flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.file_type().is_block_device() {
            use std::os::unix::fs::MetadataExt;
            let rdev = meta.rdev();
            return (libc::major(rdev), libc::minor(rdev));
        }
    }
    panic!("no block device in /dev");
}

/// Makes a node for host block device `dev` at `path` (mknod is allowed) and tries
/// to read it from inside `cg`: the answer of the shell.
fn read_block_device_inside(cg: &Cgroup, dir: &std::path::Path) -> std::process::Output {
    let (major, minor) = host_block_device();
    let node = dir.join("blk");
    let script = format!(
        "mknod {n} b {major} {minor} && head -c 512 {n} >/dev/null && echo read",
        n = node.display()
    );
    spawn_in(cg, &script).wait_with_output().expect("wait")
}

#[test]
fn placement_limits_kill_and_removal_on_this_host() {
    let _iso = isolate().expect("isolate");
    let parent = CgroupParent::new();
    let layout = Layout::detect().expect("layout");
    let cg = Cgroup::new(layout.clone(), &format!("{}/c1", parent.name())).unwrap();
    cg.create(&Limits {
        memory: Some(64 << 20),
        cpu_quota_us: Some(50_000),
        cpu_period_us: 100_000,
        cpu_shares: Some(512),
        pids_max: Some(32),
        devices: DEFAULT_RULES.to_vec(),
        ..Limits::default()
    })
    .expect("create");
    for dir in cg.dirs() {
        assert!(dir.is_dir(), "{} made", dir.display());
    }
    if let Some(mem) = layout.v1_mount("memory") {
        let limit = std::fs::read_to_string(mem.join(cg.path()).join("memory.limit_in_bytes"));
        assert_eq!(limit.unwrap().trim(), (64u64 << 20).to_string());
    }
    // A daemon that double-forks away from its parent stays in the cgroup.
    let mut child = spawn_in(&cg, "(sleep 1000 &) ; sleep 1000");
    wait_for("three members", || cg.pids().len() >= 3);
    let stats = cg.stats();
    assert_eq!(stats.memory_limit, Some(64 << 20));
    assert!(stats.pids.unwrap_or(0) >= 3, "{stats:?}");
    assert_eq!(stats.pids_limit, Some(32));
    cg.kill(Duration::from_secs(10)).expect("kill");
    assert!(cg.pids().is_empty());
    let _ = child.wait();
    cg.remove().expect("remove");
    assert!(!cg.exists());
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    let _iso = isolate().expect("isolate");
    let parent = CgroupParent::new();
    let layout = Layout::detect().expect("layout");
    let cg = Cgroup::new(layout, &format!("{}/bomb", parent.name())).unwrap();
    cg.create(&Limits {
        pids_max: Some(16),
        cpu_period_us: 100_000,
        ..Limits::default()
    })
    .unwrap();
    // 40 sleepers asked for, at most 16 tasks granted: the rest fail to fork.
    let out = spawn_in(
        &cg,
        "n=0; while [ $n -lt 40 ]; do sleep 30 & n=$((n+1)); done 2>/dev/null; \
         sleep 0.2; ls /proc | grep -c '^[0-9]' >/dev/null; echo done",
    );
    let _ = out;
    wait_for("the pids limit reached", || {
        cg.stats().pids.unwrap_or(0) >= 15
    });
    std::thread::sleep(Duration::from_millis(300));
    let pids = cg.stats().pids.unwrap_or(0);
    assert!(pids <= 16, "{pids} tasks under a limit of 16");
    cg.remove().expect("remove");
}

#[test]
fn a_block_device_made_by_mknod_cannot_be_read_under_the_v1_controller() {
    let iso = isolate().expect("isolate");
    let parent = CgroupParent::new();
    let layout = Layout::detect().expect("layout");
    if layout.v1_mount("devices").is_none() {
        eprintln!("no v1 devices controller here: covered by the v2 test");
        return;
    }
    let cg = Cgroup::new(layout, &format!("{}/dev", parent.name())).unwrap();
    cg.create(&Limits {
        devices: DEFAULT_RULES.to_vec(),
        cpu_period_us: 100_000,
        ..Limits::default()
    })
    .unwrap();
    let out = read_block_device_inside(&cg, iso.dir());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "read a host block device");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    // Without the rules the same read works: the test can fail.
    let open = Cgroup::new(cg.layout().clone(), &format!("{}/open", parent.name())).unwrap();
    open.create(&Limits::default()).unwrap();
    let _ = std::fs::remove_file(iso.dir().join("blk"));
    let out = read_block_device_inside(&open, iso.dir());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cg.remove().unwrap();
    open.remove().unwrap();
}

/// The cgroup2 paths alone: the layout as a pure v2 host without controllers would
/// show it.
fn unified_only() -> Option<Layout> {
    let layout = Layout::detect().ok()?;
    let unified = layout.unified.clone()?;
    Some(Layout {
        v1: vec![],
        unified: Some(unified),
        unified_controllers: layout.unified_controllers,
    })
}

#[test]
fn v2_placement_kill_device_filter_and_removal() {
    let iso = isolate().expect("isolate");
    let parent = CgroupParent::new();
    let Some(layout) = unified_only() else {
        eprintln!("no cgroup2 mount here");
        return;
    };
    assert!(layout.is_unified());
    let cg = Cgroup::new(layout, &format!("{}/v2", parent.name())).unwrap();
    cg.create(&Limits {
        devices: DEFAULT_RULES.to_vec(),
        cpu_period_us: 100_000,
        ..Limits::default()
    })
    .expect("create on cgroup2 with the device filter");
    // The eBPF filter: mknod allowed, the block device unreadable, /dev/null fine.
    let out = read_block_device_inside(&cg, iso.dir());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "read a host block device on v2");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    let node = iso.dir().join("blk");
    assert!(
        std::fs::symlink_metadata(&node)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false),
        "mknod itself was allowed"
    );
    // Placement, CPU time, and cgroup.kill of a double-forked daemon.
    let mut child = spawn_in(&cg, "(sleep 1000 &) ; while :; do :; done");
    wait_for("two members", || cg.pids().len() >= 2);
    wait_for("CPU time counted", || {
        cg.stats().cpu_usage_ns.unwrap_or(0) > 0
    });
    cg.kill(Duration::from_secs(10)).expect("cgroup.kill");
    assert!(cg.pids().is_empty());
    let _ = child.wait();
    cg.remove().expect("remove");
    assert!(!cg.exists());
}

#[test]
fn everything_allowed_means_no_device_filter() {
    let _iso = isolate().expect("isolate");
    let parent = CgroupParent::new();
    let Some(layout) = unified_only() else { return };
    let cg = Cgroup::new(layout, &format!("{}/all", parent.name())).unwrap();
    cg.create(&Limits {
        devices: vec![DeviceRule::everything()],
        cpu_period_us: 100_000,
        ..Limits::default()
    })
    .unwrap();
    let out = spawn_in(&cg, "head -c 1 /dev/urandom >/dev/null && echo ok")
        .wait_with_output()
        .unwrap();
    assert!(out.status.success());
    cg.remove().unwrap();
}

#[test]
fn a_leftover_empty_cgroup_is_replaced_and_bad_names_refused() {
    let _iso = isolate().expect("isolate");
    let parent = CgroupParent::new();
    let layout = Layout::detect().expect("layout");
    let rel = format!("{}/again", parent.name());
    let cg = Cgroup::new(layout.clone(), &rel).unwrap();
    cg.create(&Limits::default()).unwrap();
    cg.create(&Limits::default())
        .expect("an empty leftover is replaced");
    let names = container_cgroups::children(&layout, parent.name()).unwrap();
    assert_eq!(names, vec!["again".to_string()]);
    for bad in ["", "../x", "a//b", "a b", "/abs"] {
        assert!(Cgroup::new(layout.clone(), bad).is_err(), "{bad:?}");
    }
    cg.remove().unwrap();
}

#[test]
fn pure_v1_kills_through_the_freezer() {
    let _iso = isolate().expect("isolate");
    let parent = CgroupParent::new();
    let layout = Layout::detect().expect("layout");
    if layout.v1_mount("freezer").is_none() {
        eprintln!("no v1 freezer here");
        return;
    }
    // The layout of a host without cgroup2: no cgroup.kill, so the freezer path.
    let v1_only = Layout {
        unified: None,
        unified_controllers: vec![],
        ..layout
    };
    let cg = Cgroup::new(v1_only, &format!("{}/frozen", parent.name())).unwrap();
    cg.create(&Limits {
        cpu_period_us: 100_000,
        ..Limits::default()
    })
    .unwrap();
    let mut child = spawn_in(&cg, "(sleep 1000 &) ; while :; do (true); done");
    wait_for("members", || cg.pids().len() >= 2);
    cg.kill(Duration::from_secs(10))
        .expect("freeze, kill, thaw");
    assert!(cg.pids().is_empty());
    let _ = child.wait();
    cg.remove().unwrap();
    assert!(!cg.exists());
}
