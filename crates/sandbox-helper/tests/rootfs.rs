//! A hostile root filesystem: symlinks planted where the runtime creates files or mounts.
//! Whatever the links say, nothing on the host is created or written, and the container
//! either gets its files (links are followed inside its root, as it would follow them)
//! or its start is refused with an error that names the path. Never silently nothing.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::*;
use container_protocol::sandbox::{ExitStatus, SandboxRequest, SandboxResponse, Stdio};

/// Runs `script` in a container on `rootfs`: its exit and log, or why it did not start.
async fn run_in(
    env: &Env,
    id: &str,
    rootfs: &Path,
    script: &str,
) -> Result<(ExitStatus, String), String> {
    let sb = env.spawn(id).await;
    let mut s = spec(id, &["sh", "-c", script], &sb.log_path());
    s.rootfs = Some(rootfs.display().to_string());
    sb.setup(s).await;
    let started = sb.start(Stdio::Log, vec![]).await;
    let result = match started {
        Ok(_) => {
            let status = sb.wait().await;
            Ok((
                status,
                std::fs::read_to_string(sb.log_path()).unwrap_or_default(),
            ))
        }
        Err(e) => Err(e.to_string()),
    };
    sb.shutdown().await;
    result
}

/// A host directory a link can point at; it must stay empty.
fn host_dir(env: &Env, name: &str) -> PathBuf {
    let dir = env.iso.dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const SHOW_ETC: &str =
    "cat /etc/hostname; grep -c localhost /etc/hosts; test -f /etc/resolv.conf && echo resolv-ok";

fn assert_got_etc(id: &str, result: Result<(ExitStatus, String), String>) {
    let (status, log) = result.expect("start");
    assert_eq!(status.code, 0, "log: {log}");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [format!("{id}-host").as_str(), "2", "resolv-ok"],
        "log: {log}"
    );
}

#[test]
fn etc_linked_to_a_host_directory_stays_inside_the_root() {
    let env = env();
    let rootfs = env.rootfs();
    let host = host_dir(&env, "host-etc");
    symlink(&host, rootfs.join("etc")).unwrap();
    let result = env.rt.block_on(run_in(&env, "c-etc", &rootfs, SHOW_ETC));
    assert_eq!(
        entries(&host),
        Vec::<String>::new(),
        "files created in the host directory"
    );
    assert_got_etc("c-etc", result);
    // The link was followed inside the root, where the container sees it lead.
    let inside = rootfs.join(host.strip_prefix("/").unwrap());
    assert!(
        inside.join("hostname").exists(),
        "{} missing",
        inside.display()
    );
}

#[test]
fn hostname_linked_to_a_missing_host_path_creates_nothing_on_the_host() {
    let env = env();
    let rootfs = env.rootfs();
    let host = host_dir(&env, "host-side");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    symlink(host.join("hostname"), rootfs.join("etc/hostname")).unwrap();
    let result = env.rt.block_on(run_in(&env, "c-name", &rootfs, SHOW_ETC));
    assert_eq!(entries(&host), Vec::<String>::new(), "host file created");
    assert_got_etc("c-name", result);
}

#[test]
fn relative_escapes_are_clamped_at_the_root() {
    let env = env();
    let rootfs = env.rootfs();
    let host = host_dir(&env, "host-escape");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    // Far more `..` than the rootfs is deep: from /, that is the host's root.
    let up = "../".repeat(rootfs.components().count() + 4);
    let rel = |name: &str| {
        format!(
            "{up}{}",
            host.join(name).strip_prefix("/").unwrap().display()
        )
    };
    symlink(rel("hosts"), rootfs.join("etc/hosts")).unwrap();
    symlink(rel("resolv.conf"), rootfs.join("etc/resolv.conf")).unwrap();
    let result = env.rt.block_on(run_in(&env, "c-up", &rootfs, SHOW_ETC));
    assert_eq!(entries(&host), Vec::<String>::new(), "host files created");
    assert_got_etc("c-up", result);
}

#[test]
fn hosts_linked_to_an_existing_host_file_leaves_it_alone() {
    let env = env();
    let rootfs = env.rootfs();
    let host = host_dir(&env, "host-file");
    let file = host.join("hosts");
    std::fs::write(&file, "host's own\n").unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    symlink(&file, rootfs.join("etc/hosts")).unwrap();
    let result = env.rt.block_on(run_in(&env, "c-hosts", &rootfs, SHOW_ETC));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "host's own\n");
    assert_got_etc("c-hosts", result);
}

/// `/proc`, `/sys` and `/dev` hold the kernel's filesystems: a link there is refused.
fn assert_refused(name: &str) {
    let env = env();
    let rootfs = env.rootfs();
    let host = host_dir(&env, &format!("host-{name}"));
    symlink(&host, rootfs.join(name)).unwrap();
    let id = format!("c-{name}");
    let result = env.rt.block_on(run_in(
        &env,
        &id,
        &rootfs,
        "ls /proc/1 /dev/null >/dev/null",
    ));
    assert_eq!(entries(&host), Vec::<String>::new(), "host files created");
    let err = result.expect_err("a linked kernel filesystem was accepted");
    eprintln!("refused: {err}");
    assert!(
        err.contains(&format!("/{name}")) && err.contains("symlink"),
        "{err}"
    );
}

#[test]
fn dev_as_a_symlink_is_refused() {
    assert_refused("dev");
}

#[test]
fn proc_as_a_symlink_is_refused() {
    assert_refused("proc");
}
#[test]
fn exec_tty_does_not_follow_the_containers_ptmx_link_onto_the_host() {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let env = env();
    let rootfs = env.rootfs();
    let fifo = env.iso.dir().join("host-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).unwrap();
    inotify.add_watch(&fifo, AddWatchFlags::IN_OPEN).unwrap();
    env.rt.block_on(async {
        let sb = env.spawn("c-ptmx").await;
        let script = format!(
            "mount -t tmpfs tmpfs /dev/pts && ln -s {} /dev/pts/ptmx && echo planted && sleep 1000",
            fifo.display()
        );
        let mut s = spec("c-ptmx", &["sh", "-c", &script], &sb.log_path());
        s.rootfs = Some(rootfs.display().to_string());
        sb.setup(s).await;
        sb.start(Stdio::Log, vec![]).await.expect("start");
        let deadline = std::time::Instant::now() + TIMEOUT;
        while !std::fs::read_to_string(sb.log_path())
            .unwrap_or_default()
            .contains("planted")
        {
            assert!(std::time::Instant::now() < deadline, "link never planted");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let reply = sb
            .call(SandboxRequest::Exec {
                process: process(&["true"]),
                stdio: Stdio::Tty,
            })
            .await;
        let opened = inotify.read_events().unwrap_or_default();
        assert!(opened.is_empty(), "the helper opened the host fifo");
        let err = match reply {
            Err(e) => e.to_string(),
            Ok(SandboxResponse::Started { pid }) => {
                panic!("exec -t ran (pid {pid}) on a planted ptmx")
            }
            Ok(other) => panic!("exec: {other:?}"),
        };
        assert!(err.contains("/dev/pts/ptmx"), "{err}");
        sb.shutdown().await;
    });
}
