//! Shared pieces of the end-to-end tests in `tests/tests/`: an isolated state tree, the
//! apiserver as a real child process, and the CLI run as a user would run it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use container_testkit::{bin, bin_dir, isolate, CgroupParent, Isolated};

#[path = "oci.rs"]
pub mod oci;
#[path = "registry.rs"]
pub mod registry;

/// Upper bound for things that normally take milliseconds; reaching it means a hang,
/// not slowness, so it is generous on purpose.
pub const HANG: Duration = Duration::from_secs(20);

/// A test world: private namespaces, temporary state, and the apiserver when started.
pub struct World {
    pub iso: Isolated,
    pub apiserver: Option<Child>,
    /// The world's own cgroup parent (`--cgroup-parent`): its containers' cgroups,
    /// removed when the world goes, whatever happened.
    pub cgroups: CgroupParent,
}

impl World {
    pub fn new() -> World {
        let iso = isolate().expect("isolate test in private namespaces");
        World {
            iso,
            apiserver: None,
            cgroups: CgroupParent::new(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.iso.root()
    }
    pub fn run_dir(&self) -> PathBuf {
        self.iso.run_dir()
    }
    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("apiserver.sock")
    }

    /// Starts `container-apiserver` as a child and waits until its socket answers.
    pub fn start_apiserver(&mut self) -> u32 {
        self.start_apiserver_with(&[])
    }

    /// True while the apiserver this world started is running.
    pub fn apiserver_alive(&mut self) -> bool {
        match self.apiserver.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Like [`World::start_apiserver`], with extra environment (fault points).
    pub fn start_apiserver_with(&mut self, env: &[(&str, &str)]) -> u32 {
        self.start_apiserver_configured(env, |_| {})
    }

    /// Like [`World::start_apiserver`], with the descriptor limits a shell or a
    /// supervisor would have given it.
    pub fn start_apiserver_nofile(&mut self, soft: u64, hard: u64) -> u32 {
        self.start_apiserver_configured(&[], |cmd| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        soft,
                        hard,
                    )
                    .map_err(std::io::Error::from)
                });
            }
        })
    }

    fn start_apiserver_configured(
        &mut self,
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> u32 {
        if let Some(mut old) = self.apiserver.take() {
            let _ = old.wait();
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.iso.dir().join("apiserver.log"))
            .expect("apiserver log");
        let mut cmd = Command::new(bin("container-apiserver"));
        configure(&mut cmd);
        let child = cmd
            .envs(env.iter().copied())
            .arg("--root")
            .arg(self.root())
            .arg("--run-dir")
            .arg(self.run_dir())
            .arg("--cgroup-parent")
            .arg(self.cgroups.name())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn container-apiserver (run `cargo build --workspace` first)");
        let pid = child.id();
        self.apiserver = Some(child);
        let deadline = Instant::now() + HANG;
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            if let Some(Ok(Some(status))) = self.apiserver.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "apiserver exited at start: {status}\n{}",
                    self.apiserver_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "apiserver did not come up\n{}",
                self.apiserver_log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        pid
    }

    /// SIGKILLs the apiserver, as a crash would.
    pub fn kill_apiserver(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn apiserver_log(&self) -> String {
        std::fs::read_to_string(self.iso.dir().join("apiserver.log")).unwrap_or_default()
    }

    /// Runs the CLI against this world's apiserver.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run container")
    }

    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("container"));
        cmd.env("CONTAINER_ROOT", self.root())
            .env("CONTAINER_RUN_DIR", self.run_dir())
            // An apiserver `system start` starts inherits it.
            .env("CONTAINER_CGROUP_PARENT", self.cgroups.name())
            .args(args);
        cmd
    }

    /// Runs the CLI, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "container {args:?} failed: {}\n--- apiserver log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.apiserver_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "container {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `name` running `sleep SECS` on `network`, detached, from `rootfs`.
    pub fn run_sleeping(&self, name: &str, network: &str, rootfs: &str, secs: u32) {
        let secs = secs.to_string();
        self.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--rootfs",
            rootfs,
            "--",
            "sleep",
            &secs,
        ]);
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("container {args:?}: bad JSON ({e}): {out}"))
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Stop everything this world started, so no helper outlives its test.
        if self.apiserver.is_some() {
            let _ = self.cli(&["system", "stop"]);
        }
        self.kill_apiserver();
        kill_helpers_under(&self.run_dir());
    }
}

/// SIGKILLs every helper of this world: those with a pid file under `run`, and any
/// process started with `--run-dir <run>` (a helper killed tests may have left
/// without its pid file, or started just as its apiserver was killed).
pub fn kill_helpers_under(run: &Path) {
    let needle = format!("--run-dir\0{}\0", run.display());
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    for kind in ["network", "sandbox"] {
        let Ok(entries) = std::fs::read_dir(run.join("helpers").join(kind)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                if let Some(pid) = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

/// True while a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Polls `cond` until it holds or `HANG` passes.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A busybox root filesystem under `dir` (Debian's busybox-static), with every applet
/// linked into /bin and empty mount points.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for sub in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(root.join(sub)).expect("rootfs dirs");
    }
    let busybox = root.join("bin/busybox");
    std::fs::copy("/bin/busybox", &busybox)
        .expect("copy /bin/busybox (apt-get install busybox-static)");
    // The original, not the fresh copy: a fork elsewhere in this process may still
    // hold the copy open for writing (ETXTBSY).
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).expect("applet link");
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .expect("passwd");
    root
}

/// `ip -j ...` parsed, for checking what the kernel has (tests only: the product never
/// runs `ip`).
pub fn ip_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("ip");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Names of the links in the current network namespace.
pub fn links() -> Vec<String> {
    ip_json(&["link", "show"])
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads what a TCP server at `addr` says first, retrying while it comes up.
pub fn read_from(addr: &str) -> String {
    use std::io::Read;
    let deadline = std::time::Instant::now() + HANG;
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .expect("timeout");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if !out.is_empty() {
                return out;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing answered on {addr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A world with its apiserver running and a busybox root filesystem to run.
pub struct Setup {
    pub world: World,
    pub rootfs: String,
}

pub fn setup() -> Setup {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver();
    Setup { world, rootfs }
}

/// Mount points of this thread's namespace under `under` (the test thread has its own:
/// /proc/self would show the host's).
pub fn mounts_under(under: &std::path::Path) -> Vec<String> {
    let under = under.display().to_string();
    std::fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(&under)))
        .map(str::to_string)
        .collect()
}

/// This world's netns mounts, as the test's own mount namespace sees them (the test
/// thread has one of its own: /proc/self would show the process's, the host's).
pub fn netns_mounts(world: &World) -> Vec<String> {
    let run = world.run_dir().join("netns").display().to_string();
    std::fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&run))
        .map(str::to_string)
        .collect()
}
