//! Container logs as Docker's `local` driver keeps them: bounded by max-size × max-file,
//! rotated without losing lines, read from the end for `-n`, followed across rotations;
//! and the apiserver's own log rotated too. Costs are measured in bytes, never in time.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use container_tests::{busybox_rootfs, eventually, World};

struct Setup {
    world: World,
    rootfs: PathBuf,
}

fn setup() -> Setup {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir());
    world.start_apiserver();
    Setup { world, rootfs }
}

impl Setup {
    fn rootfs(&self) -> String {
        self.rootfs.display().to_string()
    }
    fn log_dir(&self, id: &str) -> PathBuf {
        self.world.root().join("containers").join(id)
    }
}

/// The files of a container's log, oldest first, with their sizes.
fn log_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .expect("container dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.starts_with("container.log")
                .then(|| (name, e.metadata().map(|m| m.len()).unwrap_or(0)))
        })
        .collect();
    // container.log.2, container.log.1, container.log
    files.sort_by_key(|(name, _)| {
        std::cmp::Reverse(
            name.rsplit('.')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    files
}

fn numbered(text: &str, prefix: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Issue 18 item 7: a chatty container keeps at most max-size × max-file, the newest
/// output, with no line lost or cut inside what is kept; `-n` reads across the files.
#[test]
fn a_chatty_container_keeps_its_newest_output_within_the_limit() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "run",
        "-d",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=64k",
        "--log-opt",
        "max-file=3",
        "--rootfs",
        &s.rootfs(),
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 20000 ]; do echo \"line $i of a chatty container\"; \
         echo \"err $i\" >&2; i=$((i+1)); done",
    ]);
    w.ok(&["wait", "chatty"]);
    let files = log_files(&s.log_dir("chatty"));
    assert_eq!(files.len(), 3, "{files:?}");
    for (name, size) in &files {
        assert!(*size <= 64 * 1024, "{name} is {size} bytes");
    }
    let mut kept = String::new();
    for (name, _) in &files {
        kept.push_str(&std::fs::read_to_string(s.log_dir("chatty").join(name)).expect("read"));
    }
    let out = numbered(&kept, "line ");
    assert_eq!(out.last(), Some(&19999), "the newest line is kept");
    assert!(
        out.windows(2).all(|p| p[1] == p[0] + 1),
        "lines lost inside what is kept"
    );
    assert!(kept
        .lines()
        .all(|l| l.starts_with("line ") || l.starts_with("err ")));
    assert_eq!(
        numbered(&kept, "err ").last(),
        Some(&19999),
        "stderr is kept too"
    );

    // `-n` across files: the last 3000 lines are more than the current file holds.
    let tail = w.ok(&["logs", "-n", "3000", "chatty"]);
    assert_eq!(tail.lines().count(), 3000);
    assert!(kept.ends_with(&tail));
}

/// Runs the CLI and returns its stdout and the bytes it read (`rchar` of
/// /proc/<pid>/io, taken before the child is reaped).
fn cli_with_reads(w: &World, args: &[&str]) -> (String, u64) {
    let mut child = w
        .cli_command(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn container");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::wait::waitid(
        nix::sys::wait::Id::Pid(pid),
        nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT,
    )
    .expect("waitid");
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("io");
    let rchar = io
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar");
    let status = child.wait().expect("wait");
    assert!(status.success(), "container {args:?}: {status}");
    (out, rchar)
}

/// Issue 18 item 7: `logs -n 1` read the whole file (283 MB of memory to print one
/// line). It reads from the end: for a 24 MB log the CLI reads one block.
#[test]
fn logs_tail_reads_from_the_end() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        // The default limits (10 MiB × 3) keep all of it, in three files.
        "run",
        "-d",
        "--name",
        "big",
        "--rootfs",
        &s.rootfs(),
        "--",
        "sh",
        "-c",
        "yes 0123456789012345678901234567890123456789012345678901234567890 \
         | head -c 24000000; echo; echo the-end",
    ]);
    w.ok(&["wait", "big"]);
    let total: u64 = log_files(&s.log_dir("big")).iter().map(|(_, n)| n).sum();
    assert!(total > 24_000_000, "the log holds it all: {total}");
    let (out, read) = cli_with_reads(w, &["logs", "-n", "1", "big"]);
    eprintln!("logs -n 1 of a {total}-byte log read {read} bytes");
    assert_eq!(out, "the-end\n");
    assert!(
        read < 1024 * 1024,
        "logs -n 1 read {read} bytes of a {total}-byte log"
    );
    let (out, _) = cli_with_reads(w, &["logs", "-n", "2", "big"]);
    assert!(out.starts_with("0123") && out.ends_with("\nthe-end\n") && out.lines().count() == 2);
}

/// Issue 18 item 7: `logs -f` goes on across rotations and loses nothing.
#[test]
fn logs_follow_goes_on_across_rotations() {
    let s = setup();
    let w = &s.world;
    w.ok(&[
        "run",
        "-d",
        "--name",
        "rolling",
        "--log-opt",
        "max-size=64k",
        "--log-opt",
        "max-file=3",
        "--rootfs",
        &s.rootfs(),
        "--",
        "sh",
        "-c",
        "echo ready; while [ ! -e /go ]; do sleep 0.05; done; i=0; \
         while [ $i -lt 3000 ]; do echo \"follow $i padding the line to sixty bytes or so\"; \
         i=$((i+1)); if [ $((i % 100)) -eq 0 ]; then sleep 0.05; fi; done",
    ]);
    let mut follower = w
        .cli_command(&["logs", "-f", "rolling"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("logs -f");
    let mut lines = BufReader::new(follower.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    std::fs::write(s.rootfs.join("go"), "").expect("go");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(follower.wait().expect("wait").success());
    let got = numbered(&rest.join("\n"), "follow ");
    assert_eq!(
        got,
        (0..3000).collect::<Vec<u32>>(),
        "every line, once, in order"
    );
    assert!(
        log_files(&s.log_dir("rolling")).len() == 3,
        "the log rotated while it was followed"
    );
}

/// Issue 18 item 7: bad `--log-opt`s are refused with what was wrong.
#[test]
fn log_options_are_checked() {
    let s = setup();
    let w = &s.world;
    let rootfs = s.rootfs();
    for (opt, says) in [
        ("max-size=10q", "is not a size"),
        ("max-size=1k", "below the minimum"),
        ("max-file=0", "not between 1 and 8"),
        ("max-file=9", "not between 1 and 8"),
        ("compress=true", "unknown option"),
        ("max-size", "expected KEY=VALUE"),
    ] {
        let err = w.fails(&[
            "create",
            "--log-opt",
            opt,
            "--rootfs",
            &rootfs,
            "--",
            "true",
        ]);
        assert!(err.contains(says), "--log-opt {opt}: {err}");
    }
    assert!(w.ok(&["ls", "-a", "-q"]).trim().is_empty());
}

/// Issue 18 item 7: the apiserver's own log (`system start`) is rotated too.
#[test]
fn the_apiserver_log_rotates() {
    let w = World::new();
    let start = w
        .cli_command(&["system", "start"])
        .env("CONTAINER_DAEMON_LOG_MAX_SIZE", "65536")
        .env("CONTAINER_DAEMON_LOG_MAX_FILES", "2")
        .output()
        .expect("system start");
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    let log = w.run_dir().join("apiserver.log");
    let older = w.run_dir().join("apiserver.log.1");
    // Each garbage frame is one warning line in the log.
    let mut garbage = 6u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xff; 6]);
    eventually("the apiserver log rotated twice", || {
        for _ in 0..100 {
            let mut s = UnixStream::connect(w.socket()).expect("connect");
            let _ = std::io::Write::write_all(&mut s, &garbage);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        std::fs::metadata(&older).map(|m| m.len()).unwrap_or(0) > 32 * 1024
            && std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) > 1024
    });
    for p in [&log, &older] {
        let size = std::fs::metadata(p).expect("log").len();
        assert!(size <= 65536, "{} is {size} bytes", p.display());
    }
    assert!(!w.run_dir().join("apiserver.log.2").exists());
    // Still serving, and still logging into the current file.
    w.ok(&["system", "status"]);
    let before = std::fs::metadata(&log).expect("log").len();
    let mut s = UnixStream::connect(w.socket()).expect("connect");
    let _ = std::io::Write::write_all(&mut s, &garbage);
    let _ = s.read_to_end(&mut Vec::new());
    eventually("a new line in the current file", || {
        std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) != before
    });
    w.ok(&["system", "stop"]);
}

/// Issue 18 item 7: a helper's own log under `<run>/helpers/` rotates too, its rotated
/// files go with it, and `system check` counts them as its log.
#[test]
fn a_helper_log_rotates_and_goes_with_its_container() {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver_with(&[
        ("CONTAINER_DAEMON_LOG_MAX_SIZE", "200"),
        ("CONTAINER_DAEMON_LOG_MAX_FILES", "2"),
    ]);
    let w = &world;
    w.ok(&[
        "run", "-d", "--name", "talky", "--rootfs", &rootfs, "--", "sleep", "1000",
    ]);
    for _ in 0..5 {
        w.ok(&["exec", "talky", "true"]);
    }
    let dir = w.run_dir().join("helpers/sandbox");
    let log = dir.join("talky.log");
    let older = dir.join("talky.log.1");
    assert!(older.exists(), "the sandbox helper's log rotated");
    for p in [&log, &older] {
        let size = std::fs::metadata(p).expect("log").len();
        // A line that does not fit goes whole into a fresh file.
        assert!(size < 1024, "{} is {size} bytes", p.display());
    }
    assert!(!dir.join("talky.log.2").exists());
    let check = w.cli(&["system", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    w.ok(&["rm", "-f", "talky"]);
    eventually("the helper's logs are gone with it", || {
        !log.exists() && !older.exists()
    });
    let check = w.cli(&["system", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
