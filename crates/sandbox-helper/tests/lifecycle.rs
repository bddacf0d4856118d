//! The sandbox helper's lifecycle, driven through the apiserver's helper machinery.
//! Needs root and the binary: `cargo build -p container-sandbox-helper` first.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::*;
use container_protocol::sandbox::{SandboxRequest, SandboxResponse, Stdio};

#[test]
fn log_output_and_exit_code() {
    let env = env();
    env.rt.block_on(async {
        let sb = env.spawn("c-log").await;
        // A Wait before Start pends until the workload has run.
        let early = {
            let client = sb.helper.client.clone();
            tokio::spawn(async move { client.call(SandboxRequest::Wait).await })
        };
        let spec = spec(
            "c-log",
            &["sh", "-c", "echo hello; echo oops >&2; exit 3"],
            &sb.log_path(),
        );
        let (status, log) = sb.run_logged(spec).await;
        assert_eq!(status.code, 3);
        assert_eq!(status.signal, None);
        assert!(log.contains("hello\n"), "log: {log:?}");
        assert!(log.contains("oops\n"), "log: {log:?}");
        match early.await.unwrap() {
            Ok(SandboxResponse::Exited(s)) => assert_eq!(s.code, 3),
            other => panic!("early wait: {other:?}"),
        }
        match sb.call(SandboxRequest::State).await.unwrap() {
            SandboxResponse::State(st) => {
                assert_eq!(st.exit.map(|e| e.code), Some(3));
                assert!(st.pid.is_some());
                let setup = st.setup.expect("setup report");
                assert_eq!(setup.netns_path, sb.netns_path().display().to_string());
            }
            other => panic!("state: {other:?}"),
        }
        // The helper outlives its workload: it still answers.
        assert!(matches!(
            sb.call(SandboxRequest::Echo(7)).await,
            Ok(SandboxResponse::Echo(7))
        ));
        let etc = sb.root.join("containers/c-log/etc");
        assert_eq!(
            std::fs::read_to_string(etc.join("hostname")).unwrap(),
            "c-log-host\n"
        );
        assert!(std::fs::read_to_string(etc.join("hosts"))
            .unwrap()
            .contains("127.0.0.1\tlocalhost"));
        sb.shutdown().await;
    });
}

#[test]
fn inherited_pipes_see_eof_after_exit() {
    let env = env();
    env.rt.block_on(async {
        let sb = env.spawn("c-pipe").await;
        sb.setup(spec(
            "c-pipe",
            &["sh", "-c", "read x; echo got $x; echo err-$x >&2; exit 0"],
            &sb.log_path(),
        ))
        .await;
        let (in_r, in_w) = pipe();
        let (out_r, out_w) = pipe();
        let (err_r, err_w) = pipe();
        sb.start(Stdio::Inherit, vec![in_r, out_w, err_w])
            .await
            .expect("start");
        let mut stdin = std::fs::File::from(in_w);
        stdin.write_all(b"hi\n").unwrap();
        drop(stdin);
        let out = read_to_eof(out_r, Duration::from_secs(10)).expect("stdout never hit EOF");
        let err = read_to_eof(err_r, Duration::from_secs(10)).expect("stderr never hit EOF");
        assert_eq!(out, "got hi\n");
        assert_eq!(err, "err-hi\n");
        assert_eq!(sb.wait().await.code, 0);
        sb.shutdown().await;
    });
}

#[test]
fn command_not_found_fails_start_and_helper_stays() {
    let env = env();
    env.rt.block_on(async {
        let sb = env.spawn("c-nf").await;
        sb.setup(spec("c-nf", &["nosuchcmd", "arg"], &sb.log_path()))
            .await;
        let err = sb.start(Stdio::Log, vec![]).await.unwrap_err();
        assert_eq!(
            err.kind(),
            container_protocol::ErrorKind::CommandNotFound,
            "{err}"
        );
        let err = err.to_string();
        // The apiserver names the container and its step; the helper says what failed.
        assert_eq!(err, r#"exec "nosuchcmd": No such file or directory"#);
        // Alive, and a second start says why it cannot work.
        assert!(matches!(
            sb.call(SandboxRequest::Info).await,
            Ok(SandboxResponse::Info(_))
        ));
        let again = sb.start(Stdio::Log, vec![]).await.unwrap_err().to_string();
        assert!(again.contains("earlier start failed"), "{again}");
        let netns = sb.netns_path();
        assert!(container_sandbox_helper::namespaces::is_nsfs(&netns));
        sb.shutdown().await;
        assert!(!netns.exists(), "netns mount left behind");
    });
}

#[test]
fn workload_is_pid_1_with_its_hostname_and_proc() {
    let env = env();
    env.rt.block_on(async {
        let host_name = nix::unistd::gethostname().unwrap();
        let sb = env.spawn("c-pid").await;
        let (status, log) = sb
            .run_logged(spec(
                "c-pid",
                &[
                    "sh",
                    "-c",
                    "echo $$; hostname; ls /proc | grep -c '^[0-9]'; cat /etc/hostname",
                ],
                &sb.log_path(),
            ))
            .await;
        assert_eq!(status.code, 0, "log: {log}");
        // Its own /proc: only its pid namespace's processes (sh, ls, grep).
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines[0], "1", "log: {log}");
        assert_eq!(lines[1], "c-pid-host", "log: {log}");
        let count: u32 = lines[2].parse().unwrap();
        assert!(count <= 4, "log: {log}");
        assert_eq!(lines[3], "c-pid-host", "log: {log}");
        // The host (the helper's uts namespace) kept its name.
        assert_eq!(nix::unistd::gethostname().unwrap(), host_name);
        sb.shutdown().await;
    });
}

#[test]
fn rootfs_is_pivoted_into() {
    let env = env();
    let rootfs = env.rootfs();
    env.rt.block_on(async {
        let sb = env.spawn("c-root").await;
        let mut s = spec(
            "c-root",
            &[
                "sh",
                "-c",
                "cat /etc/hostname; ls /proc/1 >/dev/null && echo proc-ok; \
                 test -c /dev/null && echo dev-ok; test -e /dev/pts/ptmx && echo pts-ok; \
                 test -e /usr && echo host-visible; grep -c localhost /etc/hosts; \
                 test -d /sys/class/net && echo sys-ok; pwd",
            ],
            &sb.log_path(),
        );
        s.rootfs = Some(rootfs.display().to_string());
        s.process.cwd = Some("/bin".into());
        let (status, log) = sb.run_logged(s).await;
        assert_eq!(status.code, 0, "log: {log}");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(
            lines,
            [
                "c-root-host",
                "proc-ok",
                "dev-ok",
                "pts-ok",
                "2",
                "sys-ok",
                "/bin"
            ],
            "log: {log}"
        );
        sb.shutdown().await;
    });
}

#[test]
fn stop_sends_sigkill_after_the_timeout() {
    let env = env();
    env.rt.block_on(async {
        let sb = env.spawn("c-stop").await;
        sb.setup(spec(
            "c-stop",
            &["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
            &sb.log_path(),
        ))
        .await;
        sb.start(Stdio::Log, vec![]).await.expect("start");
        let begun = Instant::now();
        let reply = sb
            .call(SandboxRequest::Stop {
                signal: libc::SIGTERM,
                timeout_secs: 1,
            })
            .await;
        match reply {
            Ok(SandboxResponse::Exited(s)) => {
                assert_eq!(s.signal, Some(libc::SIGKILL));
                assert_eq!(s.code, 128 + libc::SIGKILL);
            }
            other => panic!("stop: {other:?}"),
        }
        assert!(begun.elapsed() >= Duration::from_secs(1));
        assert_eq!(sb.wait().await.code, 137);
        // Not running any more: kill refuses, stop reports the same exit.
        let err = sb
            .call(SandboxRequest::Kill { signal: 9 })
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not running"), "{err}");
        sb.shutdown().await;
    });
}

#[test]
fn kill_delivers_the_signal() {
    let env = env();
    env.rt.block_on(async {
        let sb = env.spawn("c-kill").await;
        sb.setup(spec("c-kill", &["sleep", "1000"], &sb.log_path()))
            .await;
        sb.start(Stdio::Log, vec![]).await.expect("start");
        let err = sb
            .call(SandboxRequest::Kill { signal: 12345 })
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a signal"), "{err}");
        sb.call(SandboxRequest::Kill {
            signal: libc::SIGKILL,
        })
        .await
        .expect("kill");
        let s = sb.wait().await;
        assert_eq!((s.code, s.signal), (137, Some(9)));
        sb.shutdown().await;
    });
}

#[test]
fn exec_runs_in_the_containers_namespaces() {
    let env = env();
    env.rt.block_on(async {
        let sb = env.spawn("c-exec").await;
        let mut s = spec("c-exec", &["sleep", "1000"], &sb.log_path());
        s.process.env = vec!["FROM_WORKLOAD=yes".into()];
        sb.setup(s).await;
        sb.start(Stdio::Log, vec![]).await.expect("start");
        let (out_r, out_w) = pipe();
        let (_, null_w) = pipe();
        let stdin = std::fs::File::open("/dev/null").unwrap();
        let mut p = process(&[
            "sh",
            "-c",
            "hostname; readlink /proc/self/ns/net; readlink /proc/1/ns/uts; \
             test $$ -gt 1 && echo not-init; echo $FROM_WORKLOAD $EXTRA; exit 5",
        ]);
        p.env = vec!["EXTRA=too".into()];
        let reply = sb
            .call_fds(
                SandboxRequest::Exec {
                    process: p,
                    stdio: Stdio::Inherit,
                },
                vec![stdin.into(), out_w, null_w],
            )
            .await;
        // The reply comes at once; the exit is collected separately.
        let pid = match reply {
            Ok((SandboxResponse::Started { pid }, _)) => pid,
            other => panic!("exec: {other:?}"),
        };
        match sb.call(SandboxRequest::ExecWait { pid }).await {
            Ok(SandboxResponse::Exited(s)) => assert_eq!(s.code, 5),
            other => panic!("exec wait: {other:?}"),
        }
        let out = read_to_eof(out_r, Duration::from_secs(10)).expect("exec stdout EOF");
        let lines: Vec<&str> = out.lines().collect();
        let netns_ino = std::fs::metadata(sb.netns_path()).unwrap().ino();
        assert_eq!(lines[0], "c-exec-host", "out: {out}");
        assert_eq!(lines[1], format!("net:[{netns_ino}]"), "out: {out}");
        // /proc/1 is the workload's: exec sees the container's pid namespace.
        assert!(lines[2].starts_with("uts:["), "out: {out}");
        assert_eq!(lines[3], "not-init", "out: {out}");
        assert_eq!(lines[4], "yes too", "out: {out}");

        let err = sb
            .call(SandboxRequest::Exec {
                process: process(&["nosuchcmd"]),
                stdio: Stdio::Log,
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(r#"exec "nosuchcmd""#), "{err}");
        // With a terminal too.
        let started = sb
            .call(SandboxRequest::Exec {
                process: process(&["sh", "-c", "exit 4"]),
                stdio: Stdio::Tty,
            })
            .await
            .expect("exec with a terminal");
        let SandboxResponse::Started { pid } = started else {
            panic!("{started:?}")
        };
        let exited = sb
            .call(SandboxRequest::ExecWait { pid })
            .await
            .expect("exec wait");
        assert!(
            matches!(exited, SandboxResponse::Exited(s) if s.code == 4),
            "{exited:?}"
        );
        sb.shutdown().await;
    });
}

#[test]
fn tty_start_hands_back_the_master() {
    let env = env();
    env.rt.block_on(async {
        let sb = env.spawn("c-tty").await;
        sb.setup(spec(
            "c-tty",
            &[
                "sh",
                "-c",
                "test -t 0 && test -t 1 && echo tty-ok $TERM; sleep 0.5",
            ],
            &sb.log_path(),
        ))
        .await;
        let (resp, fds) = sb
            .call_fds(SandboxRequest::Start { stdio: Stdio::Tty }, vec![])
            .await
            .expect("start");
        assert!(matches!(resp, SandboxResponse::Started { .. }));
        assert_eq!(fds.len(), 1);
        sb.call(SandboxRequest::Resize {
            rows: 30,
            cols: 100,
        })
        .await
        .expect("resize");
        let master = fds.into_iter().next().unwrap();
        // A pty master reads EIO, not EOF, once the slave side is closed.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut f = std::fs::File::from(master);
            let mut out = Vec::new();
            let mut buf = [0u8; 256];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            let _ = tx.send(String::from_utf8_lossy(&out).into_owned());
        });
        let out = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("pty closed");
        assert!(out.contains("tty-ok xterm"), "out: {out:?}");
        assert_eq!(sb.wait().await.code, 0);
        sb.shutdown().await;
    });
}

#[test]
fn shutdown_kills_the_workload_and_removes_the_netns() {
    let env = env();
    env.rt.block_on(async {
        let sb = env.spawn("c-down").await;
        sb.setup(spec("c-down", &["sleep", "1000"], &sb.log_path()))
            .await;
        let netns = sb.netns_path();
        assert!(container_sandbox_helper::namespaces::is_nsfs(&netns));
        let pid = sb.start(Stdio::Log, vec![]).await.expect("start");
        let client = sb.helper.client.clone();
        sb.shutdown().await;
        assert!(client.is_closed());
        assert!(!netns.exists(), "netns mount left behind");
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        let sock = sb.run.join("helpers/sandbox/c-down.sock");
        assert!(!sock.exists(), "bootstrap socket left behind");
    });
}

#[test]
fn killed_helper_fails_pending_wait_and_takes_the_workload() {
    let env = env();
    env.rt.block_on(async {
        let sb = env.spawn("c-gone").await;
        sb.setup(spec("c-gone", &["sleep", "1000"], &sb.log_path()))
            .await;
        let pid = sb.start(Stdio::Log, vec![]).await.expect("start");
        let client = sb.helper.client.clone();
        let waiting = tokio::spawn(async move { client.call(SandboxRequest::Wait).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(sb.helper.info.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let err = tokio::time::timeout(TIMEOUT, waiting)
            .await
            .expect("wait not failed")
            .unwrap()
            .unwrap_err();
        assert!(err.is_gone(), "{err}");
        assert!(err.to_string().contains("is gone"), "{err}");
        // The workload dies with its helper (parent death signal).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let gone = stat.is_empty() || stat.contains(") Z ");
            if gone {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "workload {pid} outlived its helper"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn failing_step_before_exec_is_named() {
    let env = env();
    env.rt.block_on(async {
        let sb = env.spawn("c-cwd").await;
        let mut s = spec("c-cwd", &["true"], &sb.log_path());
        s.process.cwd = Some("/no/such/dir".into());
        sb.setup(s).await;
        let err = sb.start(Stdio::Log, vec![]).await.unwrap_err().to_string();
        assert!(
            err == "chdir /no/such/dir: No such file or directory",
            "{err}"
        );
        sb.shutdown().await;
    });
}
