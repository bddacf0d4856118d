//! A helper's bootstrap socket under abuse: connections that never say hello, or
//! announce a huge first frame, are closed, and only a bounded number may wait at once.
//! The helpers and the apiserver share this code (`rpc::serve`, `Admission`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use container_protocol::bootstrap::{bootstrap_connect, create_endpoint, serve_bootstrap, Vendor};
use container_protocol::frame::{self, ServerFrame, MAX_FRAME};
use container_protocol::rpc::{Admission, BUSY};
use container_protocol::Client;

mod echo;
use echo::Echo;

/// Hang guard only: the deadline under test is far shorter.
const HANG: Duration = Duration::from_secs(20);

fn server(max_pending: usize, deadline: Duration) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("boot.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let admission = Admission::new(max_pending, deadline);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::UnixListener::from_std(listener).expect("listener");
            let vendor = Vendor::with_admission(Arc::new(Echo), "helper test", admission);
            serve_bootstrap(None, listener, vendor).await;
        });
    });
    (dir, path)
}

/// Reads until EOF; returns what came and how long it took.
fn read_until_closed(s: &mut UnixStream) -> (Vec<u8>, Duration) {
    s.set_read_timeout(Some(HANG)).expect("timeout");
    let start = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (out, start.elapsed())
}

fn works(path: &std::path::Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let boot = bootstrap_connect(path, "helper test")
            .await
            .expect("bootstrap");
        let echo: Client<u32, u32> = create_endpoint(&boot, "echo").await.expect("endpoint");
        assert_eq!(echo.call(7).await.expect("call"), 7);
    });
}

#[test]
fn a_connection_without_hello_is_closed_at_the_deadline() {
    let (_dir, path) = server(8, Duration::from_millis(200));
    let mut silent = UnixStream::connect(&path).expect("connect");
    let (got, took) = read_until_closed(&mut silent);
    assert!(got.is_empty(), "nothing is answered to a silent peer");
    assert!(took < HANG, "the silent connection was never closed");
    works(&path);
}

#[test]
fn a_huge_announced_first_frame_closes_the_connection_at_once() {
    let (_dir, path) = server(8, Duration::from_secs(600));
    let mut s = UnixStream::connect(&path).expect("connect");
    s.write_all(&((MAX_FRAME - 1) as u32).to_be_bytes())
        .expect("header");
    let (got, took) = read_until_closed(&mut s);
    assert!(got.is_empty());
    assert!(took < HANG, "a 4 MiB hello was waited for");
    works(&path);
}

#[test]
fn connections_past_the_pending_cap_are_refused_and_the_helper_serves_on() {
    let (_dir, path) = server(3, Duration::from_secs(600));
    let waiting: Vec<UnixStream> = (0..3)
        .map(|_| UnixStream::connect(&path).expect("connect"))
        .collect();
    // The listener has no place left: the next one is told so, and closed.
    let mut extra = UnixStream::connect(&path).expect("connect");
    let (got, took) = read_until_closed(&mut extra);
    assert!(took < HANG);
    assert!(got.len() > 4, "a refusal is sent, got {got:?}");
    match frame::decode::<ServerFrame<()>>(&got[4..]) {
        Ok(ServerFrame::Refused { message }) => assert_eq!(message, BUSY),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Their places come back when they go.
    drop(waiting);
    let deadline = Instant::now() + HANG;
    loop {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let ok = rt.block_on(async { bootstrap_connect(&path, "helper test").await.is_ok() });
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "places never came back");
        std::thread::sleep(Duration::from_millis(10));
    }
    works(&path);
}
