//! The apiserver's socket under abuse: memory, hello deadlines, waiting connections and
//! descriptors. Memory is measured as the daemon's VmRSS; no assertion is about time.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use container_apiserver::server::{connection_budget, TOO_MANY};
use container_protocol::api::{ApiRequest, ApiResponse, NetworkCreate, SERVICE};
use container_protocol::frame::{self, ClientFrame, ServerFrame, MAX_FRAME, PROTOCOL_VERSION};
use container_protocol::rpc::BUSY;
use container_protocol::Client;
use container_tests::{busybox_rootfs, eventually, runtime, World, HANG};

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
    // Served after the start-up probes, whose places are then free again.
    world.ok(&["system", "status"]);
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

fn soft_nofile(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("Max open files")
}

/// Issue 18 item 5: started with the soft limit a shell gives (1024), the apiserver
/// raises it to the hard one, so a thousand idle clients leave room for real work.
#[test]
fn a_thousand_idle_connections_leave_room_for_work() {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    let pid = world.start_apiserver_nofile(1024, 8192);
    assert_eq!(
        soft_nofile(pid),
        8192,
        "the soft limit is raised to the hard one"
    );
    let idle: Vec<UnixStream> = (0..1000).map(|_| greeted(&world)).collect();
    world.ok(&["network", "create", "--subnet", "10.91.0.0/24", "n1"]);
    let out = world.ok(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "--rootfs",
        &rootfs,
        "--",
        "echo",
        "hi",
    ]);
    assert_eq!(out.trim(), "hi");
    assert!(!world.apiserver_log().contains("Too many open files"));
    drop(idle);
}

/// Issue 18 item 5: when client connections reach the budget, the next clients are
/// refused in one clear line before the descriptors kept for the work are touched, and
/// a client already connected still gets its work done.
#[test]
fn past_the_descriptor_budget_clients_are_refused_and_work_goes_on() {
    let mut world = World::new();
    let rootfs = busybox_rootfs(world.iso.dir()).display().to_string();
    world.start_apiserver_nofile(700, 700);
    let rt = runtime();
    let client: Client<ApiRequest, ApiResponse> = rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(world.socket())
            .await
            .expect("connect");
        Client::connect(stream, SERVICE, "apiserver")
            .await
            .expect("hello")
    });

    let mut idle = Vec::new();
    let refusal = loop {
        assert!(idle.len() < 700, "700 connections in 700 descriptors");
        let mut s = UnixStream::connect(world.socket()).expect("connect");
        s.set_read_timeout(Some(HANG)).expect("timeout");
        s.write_all(&hello()).expect("hello");
        match read_frame(&mut s) {
            ServerFrame::Hello { .. } => idle.push(s),
            ServerFrame::Refused { message } => break message,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(refusal, TOO_MANY);
    assert_eq!(
        idle.len() + 1,
        connection_budget(700),
        "the budget is used, no more"
    );
    let err = world.fails(&["system", "status"]);
    assert!(err.contains(TOO_MANY) && err.lines().count() == 1, "{err}");

    // Work on a connection that is already open draws on the reserve.
    let created = rt.block_on(client.call(ApiRequest::NetworkCreate(NetworkCreate {
        name: "n1".into(),
        plugin: None,
        subnet: Some("10.92.0.0/24".into()),
        gateway: None,
        subnet_v6: None,
        gateway_v6: None,
        internal: false,
        labels: vec![],
        options: vec![],
        disable_dns: false,
        ipv6: false,
    })));
    assert!(created.is_ok(), "network create while full: {created:?}");

    // A few clients go; new ones get their places and run containers.
    idle.truncate(idle.len() - 4);
    eventually("a place frees", || {
        world.cli(&["system", "status"]).status.success()
    });
    let out = world.ok(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "--rootfs",
        &rootfs,
        "--",
        "echo",
        "hi",
    ]);
    assert_eq!(out.trim(), "hi");
    assert!(
        !world.apiserver_log().contains("Too many open files"),
        "{}",
        world.apiserver_log()
    );
    drop(idle);
}
