//! The apiserver as a real process: access control, malformed input, supervision.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use container_tests::{alive, bin, eventually, World};

#[test]
fn status_reports_version_pid_and_helpers() {
    let mut world = World::new();
    let pid = world.start_apiserver();
    let status = world.json(&["system", "status", "--format", "json"]);
    assert_eq!(status["pid"].as_u64(), Some(pid as u64));
    assert_eq!(status["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));
    assert!(status["helpers"].is_array());
    let table = world.ok(&["system", "status"]);
    assert!(table.contains(&format!("pid {pid}")), "{table}");
}

#[test]
fn socket_is_root_only_and_other_uids_are_refused() {
    let mut world = World::new();
    world.start_apiserver();
    let mode = std::fs::metadata(world.socket())
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "apiserver socket must be 0600");

    // As nobody, the 0600 socket cannot even be opened.
    let as_nobody = |world: &World| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin("container"))
            .args(["system", "status"])
            .env("CONTAINER_ROOT", world.root())
            .env("CONTAINER_RUN_DIR", world.run_dir());
        cmd.output().expect("setpriv")
    };
    // The run dir must be traversable for the refusal to come from the socket itself.
    for dir in [world.iso.dir().to_path_buf(), world.run_dir()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let out = as_nobody(&world);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ermission denied"), "{err}");

    // Even if an operator opens the socket up, the apiserver checks the peer's
    // credentials itself and refuses before decoding anything.
    std::fs::set_permissions(world.socket(), std::fs::Permissions::from_mode(0o666))
        .expect("chmod");
    let out = as_nobody(&world);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied: uid 65534"), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    // Root still gets in.
    world.ok(&["system", "status"]);
}

fn raw(world: &World, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(world.socket()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    // EOF after the bytes, as a client that gave up would.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn garbage_oversized_and_wrong_version_frames_are_refused_and_server_keeps_serving() {
    let mut world = World::new();
    world.start_apiserver();

    // Garbage body inside a valid length prefix: connection closed, nothing answered.
    let mut garbage = 6u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa]);
    assert!(raw(&world, &garbage).is_empty());
    // A frame announcing 4 GiB: refused without reading (or allocating) it.
    assert!(raw(&world, &u32::MAX.to_be_bytes()).is_empty());
    // A truncated frame followed by EOF.
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(b"short");
    assert!(raw(&world, &truncated).is_empty());
    // A well-formed hello with an unknown protocol version: refused with a reason.
    let hello: container_protocol::frame::ClientFrame<()> =
        container_protocol::frame::ClientFrame::Hello {
            version: 99,
            service: "apiserver".into(),
        };
    let reply = raw(
        &world,
        &container_protocol::frame::encode(&hello).expect("encode"),
    );
    assert!(reply.len() > 4, "a version mismatch gets an answer");
    let frame: container_protocol::frame::ServerFrame<()> =
        container_protocol::frame::decode(&reply[4..]).expect("decode refusal");
    match frame {
        container_protocol::frame::ServerFrame::Refused { message } => {
            assert!(message.contains("version 99"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Through all of that the apiserver kept serving.
    world.ok(&["system", "status"]);
    assert!(
        world.apiserver_log().contains("malformed frame"),
        "malformed input is logged"
    );
}

#[test]
fn system_start_and_stop_drive_a_detached_apiserver() {
    let world = World::new();
    let out = world.ok(&["system", "start"]);
    assert!(out.contains("apiserver started"), "{out}");
    let status = world.json(&["system", "status", "--format", "json"]);
    let pid = status["pid"].as_u64().expect("pid") as u32;
    assert!(alive(pid));
    let again = world.ok(&["system", "start"]);
    assert!(again.contains("already running"), "{again}");
    let stopped = world.ok(&["system", "stop"]);
    assert!(stopped.contains("stopped"), "{stopped}");
    eventually("apiserver exited", || !alive(pid));
    assert!(!world.socket().exists());
    let err = world.fails(&["system", "status"]);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn a_second_apiserver_on_the_same_tree_is_refused() {
    let mut world = World::new();
    world.start_apiserver();
    let out = Command::new(bin("container-apiserver"))
        .arg("--root")
        .arg(world.root())
        .arg("--run-dir")
        .arg(world.run_dir())
        .output()
        .expect("second apiserver");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another apiserver"), "{err}");
    world.ok(&["system", "status"]);
}

#[test]
fn readiness_is_notified_and_sigterm_stops_only_the_apiserver() {
    let mut world = World::new();
    // What systemd does for Type=notify: a datagram socket named by NOTIFY_SOCKET.
    let notify_path = world.iso.dir().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("bind notify socket");
    notify
        .set_read_timeout(Some(container_tests::HANG))
        .expect("timeout");
    let notify_env = notify_path.display().to_string();
    let pid = world.start_apiserver_with(&[("NOTIFY_SOCKET", &notify_env)]);
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 from the apiserver");
    assert_eq!(&buf[..n], b"READY=1");
    // By then the socket answers and the default network's helper runs.
    let status = world.json(&["system", "status", "--format", "json"]);
    let helper = status["helpers"][0]["pid"]
        .as_u64()
        .expect("a network helper") as u32;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let n = notify
        .recv(&mut buf)
        .expect("STOPPING=1 from the apiserver");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let mut child = world.apiserver.take().expect("apiserver child");
    let exit = child.wait().expect("wait apiserver");
    assert!(exit.success(), "a graceful stop exits 0: {exit}");
    assert!(!world.socket().exists(), "the socket goes with it");
    assert!(
        alive(helper),
        "helpers outlive an apiserver stopped by its supervisor"
    );
    // The supervisor starts it again: it reaches the same helper.
    world.start_apiserver();
    let status = world.json(&["system", "status", "--format", "json"]);
    assert_eq!(status["helpers"][0]["pid"].as_u64(), Some(helper as u64));
}
