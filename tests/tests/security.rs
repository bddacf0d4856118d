//! Confinement by default (issue 10): a probe suite inside ordinary containers tries
//! what an attacker tries (write kernel settings, mount, unshare, setns, read masked
//! files, ptrace, load a module, use the kernel keyring, open raw and vsock sockets,
//! gain privileges through a setuid binary, make 32-bit system calls), and each attempt
//! must fail. Then the other direction: `--privileged`, `--cap-add` and the
//! `--security-opt` relaxations re-enable exactly what they name, and an exec'd process
//! is confined like the workload.
//!
//! The probes: busybox for what a shell does, and `tests/fixtures/probe.c`, built static
//! here, for the system calls busybox cannot make.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use container_tests::{setup, Setup, World};

/// Docker's default set: CAP_CHOWN … CAP_AUDIT_WRITE, CAP_SETFCAP.
const DEFAULT_CAPS: u64 = 0xa80425fb;
const CAP_NET_RAW: u64 = 1 << 13;
const CAP_SYS_PTRACE: u64 = 1 << 19;
const CAP_SYS_ADMIN: u64 = 1 << 21;

/// The probe binary, compiled once per test process into the target's own scratch
/// directory (not /tmp, where every run left one behind), under a name of its own
/// and then renamed, so that a run beside this one never sees half a binary.
fn probe_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(dir).expect("probe dir");
        let out = dir.join("probe");
        let building = dir.join(format!(".probe.{}", std::process::id()));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/probe.c");
        let status = Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&building)
            .arg(&src)
            .status()
            .expect("gcc (apt-get install gcc libc6-dev)");
        assert!(status.success(), "gcc -static {}", src.display());
        std::fs::rename(&building, &out).expect("rename probe");
        out
    })
}

/// A world with the probe in its rootfs at /bin/probe, and a root-owned setuid copy at
/// /bin/suid-probe.
fn world() -> Setup {
    let s = setup();
    let bin = Path::new(&s.rootfs).join("bin");
    std::fs::copy(probe_binary(), bin.join("probe")).expect("copy probe");
    let suid = bin.join("suid-probe");
    std::fs::copy(probe_binary(), &suid).expect("copy probe");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    s
}

/// `run --rm` with `flags`, then `cmd`: (exit code, stdout, stderr).
fn run(s: &Setup, flags: &[&str], cmd: &[&str]) -> (i32, String, String) {
    let mut args = vec!["run", "--rm", "--network", "none", "--rootfs", &s.rootfs];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(cmd);
    let out = s.world.cli(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(s: &Setup, flags: &[&str], cmd: &[&str]) -> String {
    let (code, out, err) = run(s, flags, cmd);
    assert_eq!(
        code,
        0,
        "{flags:?} {cmd:?}: {err}\n{}",
        s.world.apiserver_log()
    );
    out
}

/// `Name:\tvalue` lines of /proc/self/status as the workload sees them.
fn status_of(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

fn hex(text: &str, key: &str) -> u64 {
    u64::from_str_radix(&status_of(text, key), 16).expect("hex")
}

fn status(s: &Setup, flags: &[&str]) -> String {
    ok(s, flags, &["cat", "/proc/self/status"])
}

/// Each probe's answer, by name, from one container.
fn probes(s: &Setup, flags: &[&str], names: &[&str]) -> Vec<(String, String)> {
    let script: String = names
        .iter()
        .map(|n| format!("echo \"{n}=$(probe {n})\"; "))
        .collect();
    let out = ok(s, flags, &["sh", "-c", &script]);
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn answers(s: &Setup, flags: &[&str], expected: &[(&str, &str)]) {
    let names: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    let got = probes(s, flags, &names);
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(n, want)| !got.iter().any(|(k, v)| k == n && v == want))
        .map(|(n, want)| {
            let had = got.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            format!("{n}: wanted {want}, got {had:?}")
        })
        .collect();
    assert!(wrong.is_empty(), "{flags:?}: {wrong:#?}");
}

/// Every capability the runtime itself holds (the machine's sandbox may withhold some):
/// what `--privileged` can give.
fn all_caps() -> u64 {
    let st = std::fs::read_to_string("/proc/self/status").expect("status");
    hex(&st, "CapBnd")
}

#[test]
fn a_default_container_holds_dockers_capabilities_under_seccomp() {
    let s = world();
    let st = status(&s, &[]);
    for set in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(hex(&st, set), DEFAULT_CAPS, "{set}\n{st}");
    }
    assert_eq!(hex(&st, "CapInh"), 0, "{st}");
    assert_eq!(hex(&st, "CapAmb"), 0, "{st}");
    assert_eq!(status_of(&st, "Seccomp"), "2", "{st}");
    assert_eq!(status_of(&st, "NoNewPrivs"), "0", "{st}");
    // A user other than root holds none, whatever the bounding set.
    let st = status(&s, &["-u", "65534"]);
    assert_eq!(hex(&st, "CapEff"), 0, "{st}");
    assert_eq!(hex(&st, "CapPrm"), 0, "{st}");
    assert_eq!(hex(&st, "CapBnd"), DEFAULT_CAPS, "{st}");
}

#[test]
fn what_an_attacker_tries_fails() {
    let s = world();
    answers(
        &s,
        &[],
        &[
            ("mount", "EPERM"),
            ("unshare-user", "EPERM"),
            ("unshare-mount", "EPERM"),
            ("setns", "EPERM"),
            ("clone-newuser", "EPERM"),
            ("clone3", "ENOSYS"),
            ("ptrace", "EPERM"),
            ("init_module", "EPERM"),
            ("keyctl", "EPERM"),
            ("vsock", "EPERM"),
            // NET_RAW is one of the defaults; --cap-drop takes it (below).
            ("raw-socket", "ok"),
        ],
    );
    answers(&s, &["--cap-drop", "NET_RAW"], &[("raw-socket", "EPERM")]);
    // Opening for writing is the attempt: a read-only mount refuses the open, and an
    // open that succeeded would write nothing.
    let script = "for f in /proc/sys/kernel/core_pattern /proc/sysrq-trigger /proc/sys/vm/drop_caches \
                  /proc/irq/default_smp_affinity /sys/kernel/mm/transparent_hugepage/enabled; do \
                    if [ -e $f ]; then ( : > $f ) 2>/dev/null && echo \"writable $f\"; fi; done; \
                  echo interrupts=$(wc -c < /proc/interrupts) timer_list=$(wc -c < /proc/timer_list) \
                    firmware=$(ls -A /sys/firmware | wc -l)";
    let out = ok(&s, &[], &["sh", "-c", script]);
    assert!(!out.contains("writable"), "{out}");
    assert!(
        out.contains("interrupts=0 timer_list=0 firmware=0"),
        "masked files must read empty: {out}"
    );
}

#[test]
fn no_new_privileges_stops_a_setuid_binary() {
    let s = world();
    // Without it, a setuid-root binary run by nobody becomes root, as on any system.
    assert_eq!(
        ok(&s, &["-u", "65534"], &["suid-probe", "euid"]).trim(),
        "0"
    );
    let out = ok(
        &s,
        &["-u", "65534", "--security-opt", "no-new-privileges"],
        &[
            "sh",
            "-c",
            "suid-probe euid; grep NoNewPrivs /proc/self/status",
        ],
    );
    assert!(out.starts_with("65534\n"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn privileged_and_cap_add_give_back_exactly_what_they_name() {
    let s = world();
    let st = status(&s, &["--privileged"]);
    assert_eq!(hex(&st, "CapEff"), all_caps(), "{st}");
    assert_eq!(status_of(&st, "Seccomp"), "0", "{st}");
    // No masks, nothing read-only, /sys writable.
    let mounts = ok(&s, &["--privileged"], &["cat", "/proc/self/mountinfo"]);
    for path in ["/proc/interrupts", "/proc/sys ", "/sys/firmware"] {
        assert!(!mounts.contains(&format!(" {path}")), "{path} in {mounts}");
    }
    let sys = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/sys"))
        .expect("/sys mount");
    assert!(sys.split(' ').nth(5).unwrap().starts_with("rw"), "{sys}");
    answers(
        &s,
        &["--privileged"],
        &[("mount", "ok"), ("unshare-user", "ok")],
    );

    // --cap-add CAP_SYS_ADMIN: that capability and the calls Docker's profile gives it,
    // nothing else: still filtered, still masked.
    let st = status(&s, &["--cap-add", "SYS_ADMIN"]);
    assert_eq!(hex(&st, "CapEff"), DEFAULT_CAPS | CAP_SYS_ADMIN, "{st}");
    assert_eq!(status_of(&st, "Seccomp"), "2", "{st}");
    answers(
        &s,
        &["--cap-add", "sys_admin"],
        &[
            ("mount", "ok"),
            ("unshare-mount", "ok"),
            // clone3 now reaches the kernel, which refuses its empty arguments.
            ("clone3", "EINVAL"),
            ("ptrace", "EPERM"),
            ("keyctl", "EPERM"),
        ],
    );
    let out = ok(
        &s,
        &["--cap-add", "SYS_ADMIN"],
        &["wc", "-c", "/proc/interrupts"],
    );
    assert!(out.starts_with("0 "), "{out}");
    answers(
        &s,
        &["--cap-add", "CAP_SYS_PTRACE"],
        &[("ptrace", "ok"), ("mount", "EPERM")],
    );
    let st = status(&s, &["--cap-add", "CAP_SYS_PTRACE"]);
    assert_eq!(hex(&st, "CapEff"), DEFAULT_CAPS | CAP_SYS_PTRACE);
    // ALL, in both directions.
    let st = status(&s, &["--cap-drop", "ALL", "--cap-add", "CHOWN"]);
    assert_eq!(hex(&st, "CapEff"), 1, "{st}");
    let st = status(&s, &["--cap-add", "ALL", "--cap-drop", "SYS_ADMIN,NET_RAW"]);
    assert_eq!(
        hex(&st, "CapEff"),
        all_caps() & !CAP_SYS_ADMIN & !CAP_NET_RAW,
        "{st}"
    );
}

#[test]
fn an_exec_is_confined_like_the_workload() {
    let s = world();
    let w = &s.world;
    let id = w
        .ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--rootfs",
            &s.rootfs,
            "--cap-drop",
            "NET_RAW",
            "--security-opt",
            "no-new-privileges",
            "--",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let workload = w.ok(&["exec", &id, "cat", "/proc/1/status"]);
    let execd = w.ok(&["exec", &id, "cat", "/proc/self/status"]);
    for key in [
        "CapBnd",
        "CapPrm",
        "CapEff",
        "CapInh",
        "CapAmb",
        "Seccomp",
        "NoNewPrivs",
    ] {
        assert_eq!(status_of(&workload, key), status_of(&execd, key), "{key}");
    }
    assert_eq!(hex(&execd, "CapEff"), DEFAULT_CAPS & !CAP_NET_RAW);
    assert_eq!(status_of(&execd, "Seccomp"), "2");
    assert_eq!(status_of(&execd, "NoNewPrivs"), "1");
    for (probe, want) in [
        ("mount", "EPERM"),
        ("raw-socket", "EPERM"),
        ("clone3", "ENOSYS"),
    ] {
        assert_eq!(w.ok(&["exec", &id, "probe", probe]).trim(), want, "{probe}");
    }
    w.ok(&["rm", "-f", &id]);
}

#[test]
fn seccomp_profiles_in_dockers_format() {
    let s = world();
    let dir = s.world.iso.dir();
    // A deny-list profile: everything but mkdir, which answers EACCES.
    let no_mkdir = dir.join("no-mkdir.json");
    std::fs::write(
        &no_mkdir,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", no_mkdir.display());
    let (code, _, err) = run(&s, &["--security-opt", &opt], &["mkdir", "/tmp/x"]);
    assert_ne!(code, 0);
    assert!(err.contains("Permission denied"), "{err}");
    // The container keeps the profile: removing the file changes nothing for it.
    let id = s
        .world
        .ok(&[
            "create",
            "--network",
            "none",
            "--rootfs",
            &s.rootfs,
            "--security-opt",
            &opt,
            "--",
            "mkdir",
            "/tmp/y",
        ])
        .trim()
        .to_string();
    std::fs::remove_file(&no_mkdir).unwrap();
    let out = s.world.cli(&["start", "-a", &id]);
    assert!(!out.status.success());
    s.world.ok(&["rm", &id]);
    // unconfined: no filter at all.
    let st = status(&s, &["--security-opt", "seccomp=unconfined"]);
    assert_eq!(status_of(&st, "Seccomp"), "0");
    assert_eq!(hex(&st, "CapEff"), DEFAULT_CAPS, "capabilities stay");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn thirty_two_bit_system_calls_need_a_profile_that_names_them() {
    let s = world();
    // Docker's profile maps x86_64 to x86 and x32: the same rules for 32-bit entry.
    answers(&s, &[], &[("getpid32", "ok")]);
    let only64 = s.world.iso.dir().join("only64.json");
    std::fs::write(
        &only64,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", only64.display());
    let (code, _, _) = run(&s, &["--security-opt", &opt], &["probe", "getpid32"]);
    assert_eq!(code, 128 + libc_sigsys(), "killed by SIGSYS");
}

fn libc_sigsys() -> i32 {
    31
}

#[test]
fn a_profile_is_compiled_once_not_at_every_start() {
    let s = world();
    for _ in 0..3 {
        ok(&s, &[], &["true"]);
    }
    ok(&s, &["--cap-add", "SYS_ADMIN"], &["true"]);
    let log = s.world.apiserver_log();
    let compiled: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("seccomp profile default compiled"))
        .collect();
    assert_eq!(compiled.len(), 2, "once per capability set: {compiled:#?}");
}

#[test]
fn the_filesystem_is_dockers() {
    let s = world();
    let mounts = ok(&s, &["--shm-size", "1m"], &["cat", "/proc/self/mountinfo"]);
    let mount = |path: &str| -> String {
        mounts
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(path))
            .unwrap_or_else(|| panic!("no mount at {path}: {mounts}"))
            .to_string()
    };
    let shm = mount("/dev/shm");
    for opt in ["nosuid", "nodev", "noexec"] {
        assert!(shm.contains(opt), "{shm}");
    }
    assert!(shm.contains("size=1024k"), "{shm}");
    assert!(
        mount("/dev/pts").contains("ptmxmode=666"),
        "a devpts of its own"
    );
    // Masks: files under /dev/null, directories under an empty read-only tmpfs.
    // (This kernel has no /proc/kcore: a path it does not have is skipped.)
    assert!(
        mount("/proc/interrupts").contains("/null "),
        "{}",
        mount("/proc/interrupts")
    );
    assert!(
        mount("/proc/acpi").contains(" - tmpfs "),
        "{}",
        mount("/proc/acpi")
    );
    assert!(
        mount("/sys/firmware").contains(" ro,"),
        "{}",
        mount("/sys/firmware")
    );
    assert!(
        mount("/proc/sys").contains(" ro,"),
        "{}",
        mount("/proc/sys")
    );
    assert!(mount("/sys").contains(" ro,"), "{}", mount("/sys"));
    // /dev has the default devices only.
    let dev = ok(&s, &[], &["ls", "/dev"]);
    let names: Vec<&str> = dev.split_whitespace().collect();
    assert_eq!(
        names,
        [
            "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
            "tty", "urandom", "zero"
        ],
        "{dev}"
    );
    // --read-only: the root is, /dev/shm and the /etc files are not.
    let (code, _, err) = run(&s, &["--read-only"], &["touch", "/x"]);
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    ok(
        &s,
        &["--read-only"],
        &[
            "sh",
            "-c",
            "touch /dev/shm/x && echo 1.2.3.4 x >> /etc/hosts",
        ],
    );
}

#[test]
fn inspect_shows_the_effective_settings() {
    let s = world();
    let id = s
        .world
        .ok(&[
            "create",
            "--network",
            "none",
            "--rootfs",
            &s.rootfs,
            "--cap-add",
            "net_admin",
            "--cap-drop",
            "CAP_MKNOD",
            "--",
            "true",
        ])
        .trim()
        .to_string();
    let v = s.world.json(&["inspect", &id]);
    let sec = &v[0]["config"]["security"];
    assert_eq!(sec["cap_add"], serde_json::json!(["CAP_NET_ADMIN"]));
    assert_eq!(sec["cap_drop"], serde_json::json!(["CAP_MKNOD"]));
    let caps: Vec<&str> = sec["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        caps.contains(&"CAP_NET_ADMIN") && !caps.contains(&"CAP_MKNOD"),
        "{caps:?}"
    );
    assert_eq!(caps.len(), 14);
    assert_eq!(sec["no_new_privileges"], false);
    assert_eq!(sec["seccomp"], "default");
    assert_eq!(sec["masked_paths"].as_array().unwrap().len(), 12);
    assert_eq!(sec["shm_size"], 64 * 1024 * 1024);
    s.world.ok(&["rm", &id]);
}

#[test]
fn the_apiserver_can_make_no_new_privileges_the_default() {
    let mut w = World::new();
    let rootfs = container_tests::busybox_rootfs(w.iso.dir())
        .display()
        .to_string();
    w.start_apiserver_with(&[("CONTAINER_NO_NEW_PRIVILEGES", "true")]);
    let run = |flags: &[&str]| {
        let mut args = vec!["run", "--rm", "--network", "none", "--rootfs", &rootfs];
        args.extend_from_slice(flags);
        args.extend(["--", "grep", "NoNewPrivs", "/proc/self/status"]);
        w.ok(&args)
    };
    assert!(run(&[]).contains('1'));
    assert!(run(&["--security-opt", "no-new-privileges=false"]).contains('0'));
}

#[test]
fn without_a_root_filesystem_run_says_what_to_pass() {
    let s = setup();
    let w = &s.world;
    let out = w.cli(&["run", "--rm", "--network", "none", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--rootfs") && err.contains("--host-rootfs"),
        "{err}"
    );
    assert_eq!(w.ok(&["ls", "-a", "-q"]).trim(), "", "nothing created");
    // The host's files, asked for by name: confined all the same.
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--host-rootfs",
        "--",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ]);
    assert!(out.contains('2'), "{out}");
    let err = w.fails(&[
        "run",
        "--rm",
        "--rootfs",
        &s.rootfs,
        "--host-rootfs",
        "--",
        "true",
    ]);
    assert!(err.contains("--host-rootfs"), "{err}");
}

/// Bad input: the value named, exit 125, nothing created (no container, no netns, no
/// address: the container would have joined the default network).
#[test]
fn bad_confinement_input_is_refused_with_nothing_created() {
    let s = world();
    let w = &s.world;
    let dir = w.iso.dir();
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        format!("seccomp={}", p.display())
    };
    let notjson = file("notjson.json", "{\"defaultAction\": ");
    let badcall = file(
        "badcall.json",
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "frobnicate"], "action": "SCMP_ACT_ALLOW"}]}"#,
    );
    let badarch = file(
        "badarch.json",
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_VAX"]}"#,
    );
    let cases: &[(&[&str], &str)] = &[
        (&["--cap-add", "CAP_FLY"], "\"CAP_FLY\""),
        (&["--cap-drop", "sys_nothing"], "\"sys_nothing\""),
        (&["--security-opt", &notjson], "not a seccomp profile"),
        (
            &["--security-opt", &badcall],
            "unknown system call \"frobnicate\"",
        ),
        (
            &["--security-opt", &badarch],
            "unknown architecture \"SCMP_ARCH_VAX\"",
        ),
        (
            &["--security-opt", "seccomp=/nonexistent/profile.json"],
            "/nonexistent/profile.json",
        ),
        (&["--security-opt", "no-new-privileges=perhaps"], "perhaps"),
        (&["--security-opt", "apparmor=mine"], "apparmor=mine"),
        (&["--shm-size", "lots"], "\"lots\""),
        (&["--shm-size", "1"], "--shm-size 1"),
    ];
    let netns = w.run_dir().join("netns");
    let ipam = w.root().join("ipam");
    let count = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    let (netns_before, ipam_before) = (count(&netns), count(&ipam.join("default")));
    for (flags, named) in cases {
        let mut args = vec!["run", "--rm", "--rootfs", &s.rootfs];
        args.extend_from_slice(flags);
        args.extend(["--", "true"]);
        let out = w.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{flags:?}: {err}");
        assert!(err.contains(named), "{flags:?}: {named} not in {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{flags:?}: {err}");
        assert_eq!(
            w.ok(&["ls", "-a", "-q"]).trim(),
            "",
            "{flags:?}: a container was left"
        );
    }
    assert_eq!(count(&netns), netns_before, "a netns was left");
    assert_eq!(
        count(&ipam.join("default")),
        ipam_before,
        "an address was left"
    );
}

/// A record written before confinement existed (version 1, no `security`, no rootfs:
/// then the host's files) loads with the defaults and `host_rootfs`, and starts confined.
#[test]
fn a_record_from_before_loads_with_the_defaults() {
    let mut w = World::new();
    let dir = w.root().join("containers/old1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"version": 1, "id": "old1", "hostname": "old1", "networks": [],
            "process": {"args": ["grep", "-E", "^(Seccomp|CapEff):", "/proc/self/status"]}}"#,
    )
    .unwrap();
    w.start_apiserver();
    let v = w.json(&["inspect", "old1"]);
    let sec = &v[0]["config"]["security"];
    assert_eq!(sec["host_rootfs"], true, "{sec}");
    assert_eq!(sec["seccomp"], "default");
    assert_eq!(sec["capabilities"].as_array().unwrap().len(), 14);
    let out = w.ok(&["start", "-a", "old1"]);
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    w.ok(&["rm", "old1"]);
}
