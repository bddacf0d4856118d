//! Robustness (issue 18): operations outlive their clients, helpers that stop answering
//! never hang a command, signals and shutdowns tell clients the truth, a full disk
//! leaves records true.

use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use container_tests::{alive, busybox_rootfs, eventually, links, netns_mounts, World, HANG};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A helper that does not answer is given this long per call in these tests.
const CALL_TIMEOUT_MS: &str = "1000";

fn setup_with(env: &[(&str, &str)]) -> (World, String) {
    let mut w = World::new();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    let mut env = env.to_vec();
    env.push(("CONTAINER_CALL_TIMEOUT_MS", CALL_TIMEOUT_MS));
    w.start_apiserver_with(&env);
    (w, rootfs)
}

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).expect("signal");
}

fn inspect(w: &World, id: &str) -> serde_json::Value {
    w.json(&["inspect", id])[0].clone()
}

fn helper_pid(w: &World, id: &str) -> u32 {
    inspect(w, id)["state"]["helper_pid"]
        .as_u64()
        .expect("a running container has a helper") as u32
}

fn network_helper_pid(w: &World, name: &str) -> u32 {
    w.json(&["network", "ls", "--format", "json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["helper_pid"].as_u64())
        .expect("network helper pid") as u32
}

/// Processes started for this world whose command line has `--id <id>`.
fn helpers_for(w: &World, id: &str) -> Vec<u32> {
    let run = format!("--run-dir\0{}\0", w.run_dir().display());
    let want = format!("--id\0{id}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| {
            let pid: u32 = p.file_name().to_str()?.parse().ok()?;
            let cmdline = String::from_utf8_lossy(&std::fs::read(p.path().join("cmdline")).ok()?)
                .into_owned();
            (cmdline.contains(&run) && cmdline.contains(&want) && alive(pid)).then_some(pid)
        })
        .collect()
}

fn reservation_files(w: &World) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(nets) = std::fs::read_dir(w.root().join("ipam")) {
        for n in nets.flatten() {
            for f in std::fs::read_dir(n.path()).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.parse::<std::net::IpAddr>().is_ok() {
                    out.push(format!("{}/{name}", n.file_name().to_string_lossy()));
                }
            }
        }
    }
    out
}

/// Runs the CLI, bounded: a command that hangs fails the test instead of the suite.
/// Its output goes to files, not pipes: descriptors it passed on (exec's stdio) may be
/// held by a helper that does not answer, and a pipe would then never see EOF.
fn bounded(w: &World, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let child = w
        .cli_command(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(std::fs::File::create(&err).expect("err"))
        .spawn()
        .expect("spawn container");
    let mut child = child;
    let status = wait_status(&mut child, args);
    std::process::Output {
        status,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    }
}

fn wait_bounded(child: Child, what: &[&str]) -> std::process::Output {
    let mut child = child;
    let status = wait_status(&mut child, what);
    let mut stderr = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_end(&mut e, &mut stderr);
    }
    std::process::Output {
        status,
        stdout: Vec::new(),
        stderr,
    }
}

fn wait_status(child: &mut Child, what: &[&str]) -> std::process::ExitStatus {
    let deadline = Instant::now() + HANG;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("container {what:?} hung for {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_check_clean(w: &World, context: &str) {
    let out = bounded(w, &["system", "check"]);
    assert!(
        out.status.success(),
        "{context}: check not clean: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

/// xorshift64*, seeded: a failure replays.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[test]
fn clients_killed_mid_run_leave_nothing_behind() {
    let (w, rootfs) = setup_with(&[]);
    for i in 1..=4 {
        w.ok(&[
            "network",
            "create",
            "--subnet",
            &format!("10.60.{i}.0/24"),
            &format!("n{i}"),
        ]);
    }
    let links_before = links();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for i in 0..24 {
        let child = w
            .cli_command(&[
                "run",
                "--rm",
                "--network",
                "n1",
                "--network",
                "n2",
                "--network",
                "n3",
                "--network",
                "n4",
                "--rootfs",
                &rootfs,
                "--",
                "true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(1 + rng.below(80)));
        // Ctrl-C, a kill, a timeout's TERM.
        let sig = [Signal::SIGINT, Signal::SIGKILL, Signal::SIGTERM][i % 3];
        let _ = kill(Pid::from_raw(child.id() as i32), sig);
        let _ = wait_bounded(child, &["run", "--rm"]);
    }
    // Every run was finished by the apiserver, or undone: `--rm` removed them all.
    eventually("every interrupted run finished and removed", || {
        w.json(&["ls", "-a", "--format", "json"])
            .as_array()
            .is_some_and(|a| a.is_empty())
    });
    eventually("no sandbox helper left", || {
        std::fs::read_dir(w.run_dir().join("helpers/sandbox"))
            .map(|d| {
                d.flatten()
                    .all(|e| e.path().extension().is_none_or(|x| x != "pid"))
            })
            .unwrap_or(true)
    });
    assert!(netns_mounts(&w).is_empty(), "{:?}", netns_mounts(&w));
    assert!(
        reservation_files(&w).is_empty(),
        "{:?}",
        reservation_files(&w)
    );
    eventually("no host veth left", || {
        links()
            .into_iter()
            .filter(|l| !links_before.contains(l))
            .count()
            == 0
    });
    assert_check_clean(&w, "after interrupted runs");

    // A `network rm` whose client dies: done whole or not begun (the client died before
    // its request arrived), never a listed network without its bridge.
    let mut removed = 0;
    for (i, delay) in [2u64, 5, 10, 20, 40, 80].into_iter().enumerate() {
        let name = format!("k{i}");
        w.ok(&[
            "network",
            "create",
            "--subnet",
            &format!("10.64.{i}.0/24"),
            &name,
        ]);
        let mut child = w
            .cli_command(&["network", "rm", &name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        // Settled: the operation, if it began, has ended.
        eventually("network rm settled", || {
            w.json(&["network", "ls", "--format", "json"])
                .as_array()
                .is_some_and(|a| a.iter().all(|n| n["name"] != name.as_str()))
                || w.cli(&["network", "inspect", &name]).status.success()
        });
        if w.cli(&["network", "inspect", &name]).status.success() {
            w.ok(&[
                "run",
                "--rm",
                "--network",
                &name,
                "--rootfs",
                &rootfs,
                "--",
                "true",
            ]);
            w.ok(&["network", "rm", &name]);
        } else {
            removed += 1;
        }
        assert_check_clean(&w, &format!("after network rm interrupted at {delay} ms"));
    }
    assert!(
        removed > 0,
        "at least one interrupted rm had begun and finished"
    );
}

#[test]
fn a_stopped_sandbox_helper_hangs_nothing() {
    let (w, rootfs) = setup_with(&[]);
    w.ok(&[
        "run", "-d", "--name", "c1", "--rootfs", &rootfs, "--", "sleep", "1000",
    ]);
    let helper = helper_pid(&w, "c1");
    signal(helper, Signal::SIGSTOP);

    for args in [vec!["exec", "c1", "true"], vec!["kill", "c1"]] {
        let out = bounded(&w, &args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("did not answer"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = bounded(&w, &["system", "check"]);
    assert!(!out.status.success(), "check must report the stuck helper");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("does not answer"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // stop escalates: SIGKILL of the helper's process group, then a dead helper's cleanup.
    let out = bounded(&w, &["stop", "-t", "0", "c1"]);
    assert!(out.status.success(), "stop: {}", stderr(&out));
    assert!(!alive(helper), "the stuck helper is gone");
    assert_eq!(inspect(&w, "c1")["state"]["status"], "stopped");

    w.ok(&[
        "run", "-d", "--name", "c2", "--rootfs", &rootfs, "--", "sleep", "1000",
    ]);
    let helper = helper_pid(&w, "c2");
    signal(helper, Signal::SIGSTOP);
    let out = bounded(&w, &["rm", "-f", "c2"]);
    assert!(out.status.success(), "rm -f: {}", stderr(&out));
    assert!(!alive(helper));
    w.ok(&["rm", "c1"]);
    assert!(
        netns_mounts(&w).is_empty(),
        "{:?}\n{}",
        netns_mounts(&w),
        w.apiserver_log()
    );
    assert_check_clean(&w, "after escalations");
}

#[test]
fn a_stopped_network_helper_hangs_nothing_else() {
    let (w, rootfs) = setup_with(&[]);
    w.ok(&["network", "create", "--subnet", "10.61.0.0/24", "slow"]);
    let helper = network_helper_pid(&w, "slow");
    signal(helper, Signal::SIGSTOP);

    let out = bounded(&w, &["network", "inspect", "slow"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("did not answer"), "{}", stderr(&out));
    // No global lock waits on it: other networks come and go.
    w.ok(&["network", "create", "--subnet", "10.62.0.0/24", "fast"]);
    w.ok(&[
        "run",
        "--rm",
        "--network",
        "fast",
        "--rootfs",
        &rootfs,
        "--",
        "true",
    ]);
    w.ok(&["network", "rm", "fast"]);
    let out = bounded(&w, &["system", "check"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("network slow"));
    // --fix replaces a helper that does not answer (after killing it: never two).
    let out = bounded(&w, &["system", "check", "--fix"]);
    assert!(
        !alive(helper),
        "fix kills the stuck helper: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(helpers_for(&w, "slow").len(), 1);

    // A run on a network whose helper stops answering fails within the deadline, and
    // its undo replaces that helper rather than leave an address behind it.
    let second = network_helper_pid(&w, "slow");
    signal(second, Signal::SIGSTOP);
    let out = bounded(
        &w,
        &[
            "run",
            "--rm",
            "--network",
            "slow",
            "--rootfs",
            &rootfs,
            "--",
            "true",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("did not answer"), "{}", stderr(&out));
    assert!(
        !alive(second),
        "the undo's release replaced the stuck helper"
    );
    assert_eq!(helpers_for(&w, "slow").len(), 1);
    assert!(
        reservation_files(&w).is_empty(),
        "{:?}",
        reservation_files(&w)
    );
    w.ok(&[
        "run",
        "--rm",
        "--network",
        "slow",
        "--rootfs",
        &rootfs,
        "--",
        "true",
    ]);
    assert_check_clean(&w, "after fix");
}

#[test]
fn system_stop_with_a_stopped_helper_still_stops() {
    let (mut w, rootfs) = setup_with(&[]);
    w.ok(&[
        "run", "-d", "--name", "c1", "--rootfs", &rootfs, "--", "sleep", "1000",
    ]);
    let sandbox = helper_pid(&w, "c1");
    let network = network_helper_pid(&w, "default");
    signal(sandbox, Signal::SIGSTOP);
    signal(network, Signal::SIGSTOP);
    let out = bounded(&w, &["system", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("apiserver exited", || !w.apiserver_alive());
    assert!(
        !alive(sandbox) && !alive(network),
        "stuck helpers are killed"
    );
    let status = w.cli(&["system", "status"]);
    assert!(!status.status.success());
    w.apiserver = None;
}

/// A container that finishes during `system stop` releases its addresses through the
/// network helper. With that helper gone (killed here, as a slow stop's late finishes
/// find it gone), a stopping apiserver must not start another: nothing would stop it.
/// Its reservations wait for the next apiserver's GC.
#[test]
fn a_stopping_apiserver_starts_no_helper() {
    let (mut w, rootfs) = setup_with(&[]);
    w.ok(&["network", "create", "--subnet", "10.64.0.0/24", "n1"]);
    for name in ["c1", "c2", "c3"] {
        w.run_sleeping(name, "n1", &rootfs, 1000);
    }
    let network = network_helper_pid(&w, "n1");
    signal(network, Signal::SIGKILL);
    eventually("network helper gone", || !alive(network));
    let out = bounded(&w, &["system", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("apiserver exited", || !w.apiserver_alive());
    w.apiserver = None;
    // A late finish may still be running `container-sandbox-helper cleanup` (same
    // command line but for the verb), which ends on its own; a helper never does.
    eventually("no helper started while stopping", || {
        helpers_for(&w, "n1").is_empty()
    });
    for c in ["c1", "c2", "c3"] {
        eventually(&format!("no sandbox helper of {c} left"), || {
            helpers_for(&w, c).is_empty()
        });
    }
    // The next apiserver releases what the stop could not.
    w.start_apiserver();
    assert!(
        reservation_files(&w).iter().all(|r| !r.starts_with("n1/")),
        "n1's reservations released at start: {:?}",
        reservation_files(&w)
    );
    w.ok(&["start", "c1"]);
}

#[test]
fn helpers_slow_at_a_restart_are_neither_buried_nor_replaced() {
    let (mut w, rootfs) = setup_with(&[]);
    w.ok(&["network", "create", "--subnet", "10.63.0.0/24", "n1"]);
    w.run_sleeping("c1", "n1", &rootfs, 1000);
    let sandbox = helper_pid(&w, "c1");
    let network = network_helper_pid(&w, "n1");
    let workload = inspect(&w, "c1")["state"]["pid"].as_u64().unwrap() as u32;
    signal(sandbox, Signal::SIGSTOP);
    signal(network, Signal::SIGSTOP);
    w.kill_apiserver();
    let started = Instant::now();
    w.start_apiserver_with(&[("CONTAINER_CALL_TIMEOUT_MS", CALL_TIMEOUT_MS)]);
    // Adoption is parallel: two stuck helpers cost one deadline, not two (and never 10 s
    // each). Not a performance assertion: a hang guard with room to spare.
    assert!(started.elapsed() < HANG);
    let c1 = inspect(&w, "c1");
    assert_eq!(
        c1["state"]["status"], "running",
        "a live container is not buried"
    );
    assert!(alive(workload));
    // Its netns (held by the stopped helper's descriptor: no mount) is the one the
    // record names, still the workload's.
    let named = c1["state"]["netns"].as_str().unwrap().to_string();
    assert!(
        named.starts_with(&format!("/proc/{sandbox}/fd/")),
        "{named}"
    );
    assert_eq!(
        std::fs::metadata(&named).map(|m| m.ino()).ok(),
        std::fs::metadata(format!("/proc/{workload}/ns/net"))
            .map(|m| m.ino())
            .ok(),
        "its netns stays"
    );
    assert_eq!(
        helpers_for(&w, "c1"),
        vec![sandbox],
        "no second sandbox helper"
    );
    let out = bounded(
        &w,
        &[
            "run",
            "--rm",
            "--network",
            "n1",
            "--rootfs",
            &rootfs,
            "--",
            "true",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not answer"), "{}", stderr(&out));
    assert_eq!(
        helpers_for(&w, "n1"),
        vec![network],
        "no second network helper"
    );

    signal(sandbox, Signal::SIGCONT);
    signal(network, Signal::SIGCONT);
    eventually("c1 answers again", || {
        w.cli(&["exec", "c1", "true"]).status.success()
    });
    eventually("n1 answers again", || {
        w.cli(&[
            "run",
            "--rm",
            "--network",
            "n1",
            "--rootfs",
            &rootfs,
            "--",
            "true",
        ])
        .status
        .success()
    });
    w.ok(&["stop", "-t", "0", "c1"]);
    assert!(!alive(workload));
    assert_check_clean(&w, "after the helpers came back");
}

#[test]
fn orphan_helpers_and_netns_mounts_are_found_and_fixed() {
    let (w, rootfs) = setup_with(&[]);
    w.ok(&[
        "run", "-d", "--name", "c1", "--rootfs", &rootfs, "--", "sleep", "1000",
    ]);
    let helper = helper_pid(&w, "c1");
    // The record goes behind the apiserver's back: its helper and mount belong to nothing.
    std::fs::remove_dir_all(w.root().join("containers/c1")).unwrap();
    let out = bounded(&w, &["system", "check", "--format", "json"]);
    assert!(!out.status.success());
    let found = String::from_utf8_lossy(&out.stdout).into_owned();
    // The apiserver answers from its view; check reads the disk and finds the record
    // gone, and --fix does what a restart would: the container is gone, with its helper.
    assert!(
        found.contains("\"c1\"") && found.contains("gone from disk"),
        "{found}"
    );
    w.ok(&["system", "check", "--fix"]);
    assert!(!alive(helper));
    assert!(netns_mounts(&w).is_empty(), "{:?}", netns_mounts(&w));
    assert_check_clean(&w, "after fix");
}

#[test]
fn stray_signals_do_not_kill_the_apiserver() {
    let (mut w, _) = setup_with(&[]);
    let pid = w.apiserver.as_ref().unwrap().id();
    for sig in [
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGALRM,
    ] {
        signal(pid, sig);
        std::thread::sleep(Duration::from_millis(50));
        assert!(w.apiserver_alive(), "{sig} killed the apiserver");
        w.ok(&["system", "status"]);
    }
    assert!(w.socket().exists());
}

#[test]
fn sigterm_with_runs_in_flight_tells_every_client_the_truth() {
    let (mut w, rootfs) = setup_with(&[]);
    let clients: Vec<(String, Child)> = (0..10)
        .map(|i| {
            let name = format!("t{i}");
            let child = w
                .cli_command(&[
                    "run", "-d", "--name", &name, "--rootfs", &rootfs, "--", "sleep", "1000",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            (name, child)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(40));
    signal(w.apiserver.as_ref().unwrap().id(), Signal::SIGTERM);
    let outcomes: Vec<(String, bool, String)> = clients
        .into_iter()
        .map(|(name, child)| {
            let out = wait_bounded(child, &["run", "-d"]);
            (name, out.status.success(), stderr(&out))
        })
        .collect();
    eventually("apiserver exited", || !w.apiserver_alive());
    w.start_apiserver_with(&[("CONTAINER_CALL_TIMEOUT_MS", CALL_TIMEOUT_MS)]);
    for (name, ok, err) in outcomes {
        let exists = w.cli(&["inspect", &name]).status.success();
        if ok {
            assert_eq!(
                inspect(&w, &name)["state"]["status"],
                "running",
                "{name} was reported started"
            );
        } else {
            assert!(!exists, "{name} was reported failed ({err}) but exists");
        }
    }
    assert_check_clean(&w, "after SIGTERM");
}

#[test]
fn a_full_state_disk_keeps_records_true() {
    let mut w = World::new();
    let rootfs = busybox_rootfs(w.iso.dir()).display().to_string();
    let root = w.root();
    std::fs::create_dir_all(&root).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &root,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=2m"),
    )
    .expect("mount a small tmpfs as the state root");
    w.start_apiserver_with(&[("CONTAINER_CALL_TIMEOUT_MS", CALL_TIMEOUT_MS)]);
    w.ok(&[
        "run", "-d", "--name", "c1", "--rootfs", &rootfs, "--", "sleep", "1000",
    ]);
    // What the runtime removes as the container stops (its generated /etc files, the
    // old state, its IPAM reservation) must not free room for the stopped state: pin
    // every file with a link.
    let files = walk(&root);
    let pin = root.join("pin");
    std::fs::create_dir_all(&pin).unwrap();
    for (i, f) in files.into_iter().enumerate() {
        if std::path::Path::new(&f).is_file() {
            std::fs::hard_link(&f, pin.join(i.to_string())).unwrap();
        }
    }
    let filler = root.join("filler");
    let _ = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", filler.display()),
            "bs=64k",
        ])
        .stderr(Stdio::null())
        .status();
    // Then every last page, in small files, until the disk refuses.
    let mut small = Vec::new();
    for i in 0.. {
        let p = root.join(format!("filler-{i}"));
        if std::fs::write(&p, [0u8; 1]).is_err() {
            let _ = std::fs::remove_file(&p);
            break;
        }
        small.push(p);
    }

    let out = bounded(&w, &["stop", "-t", "0", "c1"]);
    let df = Command::new("df").arg(&root).output().unwrap();
    assert!(
        !out.status.success(),
        "a stop whose record can't be written says so: {}",
        String::from_utf8_lossy(&df.stdout),
    );
    assert!(
        stderr(&out).contains("could not be written"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        inspect(&w, "c1")["state"]["status"],
        "stopped",
        "the truth, unwritten yet"
    );
    let out = bounded(&w, &["wait", "c1"]);
    assert!(out.status.success(), "wait does not hang");
    let out = bounded(&w, &["start", "c1"]);
    assert!(
        !stderr(&out).contains("already running"),
        "{}",
        stderr(&out)
    );
    let out = bounded(
        &w,
        &["create", "--name", "c2", "--rootfs", &rootfs, "--", "true"],
    );
    assert!(!out.status.success());
    assert!(
        !root.join("containers/c2").exists(),
        "a failed create leaves no directory"
    );

    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_dir_all(&pin).unwrap();
    for p in small {
        std::fs::remove_file(p).unwrap();
    }
    eventually("the stopped state reaches the disk", || {
        std::fs::read_to_string(root.join("containers/c1/state.json"))
            .is_ok_and(|s| s.contains("\"stopped\""))
    });
    w.kill_apiserver();
    w.start_apiserver_with(&[("CONTAINER_CALL_TIMEOUT_MS", CALL_TIMEOUT_MS)]);
    let leftovers: Vec<_> = walk(&root)
        .into_iter()
        .filter(|p| p.contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    w.ok(&["start", "c1"]);
    w.ok(&["rm", "-f", "c1"]);
    assert_check_clean(&w, "after the disk filled and emptied");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}
