//! Drives the real helper binary the way the apiserver does: spawned by its `Spawner`,
//! reached through an endpoint vended by the bootstrap socket.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use container_protocol::sandbox::{
    ExitStatus, ProcessSpec, SandboxRequest, SandboxResponse, SandboxSpec, Stdio,
};
use container_protocol::ProtocolError;
use container_store::Paths;
use container_supervise::{Deadlines, Helper, HelperTable, SandboxProto, Spawner};
use container_testkit::Isolated;

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// An isolated test with its own runtime (built after `isolate`, on this thread, so
/// the helper is spawned inside the private namespaces).
pub struct Env {
    pub iso: Isolated,
    pub rt: tokio::runtime::Runtime,
}

pub fn env() -> Env {
    let iso = container_testkit::isolate().expect("isolate");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    Env { iso, rt }
}

pub struct Sandbox {
    pub helper: Helper<SandboxProto>,
    pub table: std::sync::Arc<HelperTable<SandboxProto>>,
    pub id: String,
    pub run: PathBuf,
    pub root: PathBuf,
}

impl Env {
    pub async fn spawn(&self, id: &str) -> Sandbox {
        let binary = container_testkit::bin("container-sandbox-helper");
        assert!(
            binary.exists(),
            "{} missing: cargo build -p container-sandbox-helper first",
            binary.display()
        );
        let spawner = Spawner::new(
            Paths::new(self.iso.root(), self.iso.run_dir()),
            container_testkit::bin_dir(),
        );
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let table = HelperTable::<SandboxProto>::new(
            std::sync::Arc::new(spawner),
            tx,
            Deadlines::default(),
        );
        let helper = table.start(id, &[]).await.expect("start helper");
        Sandbox {
            helper,
            table,
            id: id.to_string(),
            run: self.iso.run_dir(),
            root: self.iso.root(),
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        busybox_rootfs(&self.iso.dir().join("rootfs"))
    }
}

/// `bin/busybox` and its applets as relative symlinks; nothing else.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in [
        "sh", "cat", "ls", "echo", "hostname", "sleep", "readlink", "test", "true", "false", "ps",
        "stat", "grep", "mount", "ln", "id",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    dir.to_path_buf()
}

pub fn spec(id: &str, args: &[&str], log: &Path) -> SandboxSpec {
    SandboxSpec {
        id: id.to_string(),
        hostname: format!("{id}-host"),
        rootfs: None,
        dns: vec![],
        hosts: vec![],
        allocations: vec![],
        net_devices: vec![],
        process: process(args),
        log_path: log.display().to_string(),
        log: Default::default(),
        labels: BTreeMap::new(),
        // These tests are about the sandbox's other parts; confinement has its own
        // end-to-end suite (tests/tests/security.rs).
        confinement: container_protocol::security::Confinement::unconfined(),
        resources: Default::default(),
        cgroup: None,
        cgroup_mounts: None,
        userns: None,
        all_devices: false,
        overlay: None,
        mounts: vec![],
    }
}

pub fn process(args: &[&str]) -> ProcessSpec {
    ProcessSpec {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        cwd: None,
        user: container_protocol::sandbox::UserSpec::root(),
        tty: false,
    }
}

impl Sandbox {
    pub fn log_path(&self) -> PathBuf {
        self.root.join("containers").join(&self.id).join("log")
    }

    pub fn netns_path(&self) -> PathBuf {
        self.run.join("netns").join(&self.id)
    }

    pub async fn call(&self, req: SandboxRequest) -> Result<SandboxResponse, ProtocolError> {
        self.call_fds(req, vec![]).await.map(|(r, _)| r)
    }

    pub async fn call_fds(
        &self,
        req: SandboxRequest,
        fds: Vec<OwnedFd>,
    ) -> Result<(SandboxResponse, Vec<OwnedFd>), ProtocolError> {
        tokio::time::timeout(TIMEOUT, self.helper.client.call_with_fds(req, fds))
            .await
            .expect("call timed out")
    }

    pub async fn setup(&self, spec: SandboxSpec) {
        match self.call(SandboxRequest::Setup(Box::new(spec))).await {
            Ok(SandboxResponse::SetUp(_)) => {}
            other => panic!("setup: {other:?}"),
        }
    }

    pub async fn start(&self, stdio: Stdio, fds: Vec<OwnedFd>) -> Result<u32, ProtocolError> {
        match self.call_fds(SandboxRequest::Start { stdio }, fds).await? {
            (SandboxResponse::Started { pid }, _) => Ok(pid),
            other => panic!("start: {other:?}"),
        }
    }

    pub async fn wait(&self) -> ExitStatus {
        match self.call(SandboxRequest::Wait).await {
            Ok(SandboxResponse::Exited(s)) => s,
            other => panic!("wait: {other:?}"),
        }
    }

    /// Setup + Start with the log, then the exit status and the log's text.
    pub async fn run_logged(&self, spec: SandboxSpec) -> (ExitStatus, String) {
        self.setup(spec).await;
        self.start(Stdio::Log, vec![]).await.expect("start");
        let status = self.wait().await;
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        (status, log)
    }

    pub async fn shutdown(&self) {
        let clean = tokio::time::timeout(TIMEOUT, self.table.shutdown(&self.id, TIMEOUT))
            .await
            .expect("shutdown timed out");
        assert!(clean, "the helper answered its shutdown");
    }
}

/// A pipe as (read end, write end).
pub fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
}

/// Reads `fd` to EOF on a thread; `None` if EOF does not come within the timeout (some
/// process still holds the write end).
pub fn read_to_eof(fd: OwnedFd, timeout: Duration) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::fs::File::from(fd).read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx.recv_timeout(timeout).ok()
}
