//! `-u USER[:GROUP]` resolved in the container's own user database, for the workload
//! and for an exec'd process.

mod common;

use std::time::Duration;

use common::*;
use container_protocol::sandbox::{SandboxRequest, SandboxResponse, Stdio, UserSpec};
use container_protocol::ErrorKind;

const WHO: &str = "echo $(id -u) $(id -g) $(id -G) $HOME";

fn rootfs_with_users(env: &Env) -> std::path::PathBuf {
    let rootfs = env.rootfs();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nusers:x:100:app\nwheel:x:10:other,app\napp:x:1000:\n",
    )
    .unwrap();
    rootfs
}

#[test]
fn a_user_name_becomes_its_ids_groups_and_home_for_the_workload_and_exec() {
    let env = env();
    let rootfs = rootfs_with_users(&env);
    env.rt.block_on(async {
        let sb = env.spawn("c-user").await;
        let mut s = spec(
            "c-user",
            &["sh", "-c", &format!("{WHO}; sleep 1000")],
            &sb.log_path(),
        );
        s.rootfs = Some(rootfs.display().to_string());
        s.process.user = UserSpec::parse("app").unwrap();
        sb.setup(s).await;
        sb.start(Stdio::Log, vec![]).await.expect("start");
        let deadline = std::time::Instant::now() + TIMEOUT;
        let log = loop {
            let log = std::fs::read_to_string(sb.log_path()).unwrap_or_default();
            if log.contains('\n') {
                break log;
            }
            assert!(std::time::Instant::now() < deadline, "no output");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(log, "1000 1000 1000 10 100 /home/app\n");

        let (out_r, out_w) = pipe();
        let (_, err_w) = pipe();
        let stdin = std::fs::File::open("/dev/null").unwrap();
        let mut p = process(&["sh", "-c", WHO]);
        p.user = UserSpec::parse("app:users").unwrap();
        let reply = sb
            .call_fds(
                SandboxRequest::Exec {
                    process: p,
                    stdio: Stdio::Inherit,
                },
                vec![stdin.into(), out_w, err_w],
            )
            .await;
        let pid = match reply {
            Ok((SandboxResponse::Started { pid }, _)) => pid,
            other => panic!("exec: {other:?}"),
        };
        match sb.call(SandboxRequest::ExecWait { pid }).await {
            Ok(SandboxResponse::Exited(s)) => assert_eq!(s.code, 0),
            other => panic!("exec wait: {other:?}"),
        }
        // An explicit group: it, and no supplementary groups.
        let out = read_to_eof(out_r, Duration::from_secs(10)).expect("exec output");
        assert_eq!(out, "1000 100 100 /home/app\n");
        sb.shutdown().await;
    });
}

#[test]
fn a_missing_user_is_an_invalid_start_and_a_number_needs_no_entry() {
    let env = env();
    let rootfs = rootfs_with_users(&env);
    env.rt.block_on(async {
        let sb = env.spawn("c-nouser").await;
        let mut s = spec("c-nouser", &["true"], &sb.log_path());
        s.rootfs = Some(rootfs.display().to_string());
        s.process.user = UserSpec::parse("nobody").unwrap();
        sb.setup(s).await;
        let err = sb.start(Stdio::Log, vec![]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        assert_eq!(
            err.to_string(),
            "user \"nobody\" not found in the container's /etc/passwd"
        );
        sb.shutdown().await;

        let sb = env.spawn("c-num").await;
        let mut s = spec("c-num", &["sh", "-c", WHO], &sb.log_path());
        s.rootfs = Some(rootfs.display().to_string());
        s.process.user = UserSpec::parse("4242").unwrap();
        let (status, log) = sb.run_logged(s).await;
        assert_eq!(status.code, 0, "{log}");
        assert_eq!(log, "4242 0 0 /\n");
        sb.shutdown().await;
    });
}
