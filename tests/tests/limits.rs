//! The apiserver's socket under abuse: memory, hello deadlines, waiting connections and
//! descriptors. Memory is measured as the daemon's VmRSS; no assertion is about time.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use container_protocol::api::SERVICE;
use container_protocol::frame::{self, ClientFrame, ServerFrame, MAX_FRAME, PROTOCOL_VERSION};
use container_protocol::rpc::BUSY;
use container_tests::{eventually, World, HANG};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn hello() -> Vec<u8> {
    let frame: ClientFrame<()> = ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        service: SERVICE.into(),
    };
    frame::encode(&frame).expect("encode").to_vec()
}

/// One server frame, read whole.
fn read_frame(s: &mut UnixStream) -> ServerFrame<()> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).expect("frame header");
    let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
    s.read_exact(&mut body).expect("frame body");
    frame::decode(&body).expect("decode")
}

/// A connection past its hello.
fn greeted(world: &World) -> UnixStream {
    let mut s = UnixStream::connect(world.socket()).expect("connect");
    s.set_read_timeout(Some(HANG)).expect("timeout");
    s.write_all(&hello()).expect("hello");
    match read_frame(&mut s) {
        ServerFrame::Hello { .. } => s,
        other => panic!("expected the hello back, got {other:?}"),
    }
}

/// Reads until the server closes; `None` if it never does.
fn until_closed(s: &mut UnixStream) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(HANG)).expect("timeout");
    let start = Instant::now();
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(out),
        Err(_) if start.elapsed() >= HANG => None,
        Err(e) => panic!("read: {e}"),
    }
}

/// Issue 18 item 4: 300 connections that announce 4 MiB − 1 and send nothing more, before
/// and after their hello, must not cost the daemon what they announce.
#[test]
fn announced_frames_cost_memory_only_as_their_bytes_arrive() {
    let mut world = World::new();
    let pid = world.start_apiserver();
    world.ok(&["system", "status"]);
    let before = rss_kib(pid);

    let header = ((MAX_FRAME - 1) as u32).to_be_bytes();
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut fresh = UnixStream::connect(world.socket()).expect("connect");
        fresh.write_all(&header).expect("header");
        held.push(fresh);
        let mut greeted = greeted(&world);
        greeted.write_all(&header).expect("header");
        held.push(greeted);
    }
    // Accepted in order, so every connection above has been read by now.
    world.ok(&["system", "status"]);
    let mut peak = 0;
    for _ in 0..20 {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(10));
    }
    let grown = peak.saturating_sub(before);
    eprintln!("600 announced frames: VmRSS {before} KiB -> {peak} KiB");
    // 600 connections announcing 4 MiB each were 2.4 GB; their buffers and tasks are
    // a few KiB each.
    assert!(
        grown < 48 * 1024,
        "600 announced frames grew the apiserver by {grown} KiB (from {before} KiB)"
    );
    // A first frame bigger than any hello closed its connection at once.
    for s in held.iter_mut().step_by(2) {
        assert_eq!(
            until_closed(s),
            Some(vec![]),
            "a 4 MiB hello was waited for"
        );
    }
    drop(held);
    world.ok(&["system", "status"]);
}

/// Issue 18 item 4: a connection that never says hello is closed at the deadline.
#[test]
fn connections_without_hello_are_closed_at_the_deadline() {
    let mut world = World::new();
    world.start_apiserver_with(&[("CONTAINER_HELLO_TIMEOUT_MS", "300")]);
    let mut silent: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(world.socket()).expect("connect"))
        .collect();
    for s in &mut silent {
        assert_eq!(
            until_closed(s),
            Some(vec![]),
            "a hello-less connection stayed open"
        );
    }
    assert!(world.apiserver_log().contains("no hello within"));
    world.ok(&["system", "status"]);
}

/// Issue 18 item 4: only so many connections may wait for their hello; the next are
/// refused at once, and the daemon serves again when the waiting ones go.
#[test]
fn connections_past_the_pending_cap_are_refused_cleanly() {
    let mut world = World::new();
    world.start_apiserver_with(&[("CONTAINER_MAX_PENDING_HELLOS", "16")]);
    let waiting: Vec<UnixStream> = (0..16)
        .map(|_| UnixStream::connect(world.socket()).expect("connect"))
        .collect();
    let mut extra = UnixStream::connect(world.socket()).expect("connect");
    let got = until_closed(&mut extra).expect("the connection past the cap was kept");
    assert!(got.len() > 4, "a refusal is sent, got {got:?}");
    match frame::decode::<ServerFrame<()>>(&got[4..]) {
        Ok(ServerFrame::Refused { message }) => assert_eq!(message, BUSY),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let err = world.fails(&["system", "status"]);
    assert!(err.contains(BUSY), "the CLI says why: {err}");
    drop(waiting);
    eventually("the apiserver serves again", || {
        world.cli(&["system", "status"]).status.success()
    });
}
