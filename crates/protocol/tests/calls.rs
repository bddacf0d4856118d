//! A call's life on a client endpoint: it is entered as pending when it is made, and
//! leaves the table when it is answered or dropped, even if it was never polled.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use container_protocol::bootstrap::{bootstrap_connect, create_endpoint, serve_bootstrap, Vendor};
use container_protocol::{Client, ProtocolError};

mod echo;
use echo::Echo;

async fn endpoint(dir: &tempfile::TempDir) -> Client<u32, u32> {
    let path = dir.path().join("boot.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    tokio::spawn(serve_bootstrap(
        None,
        listener,
        Vendor::new(Arc::new(Echo), "helper test"),
    ));
    let boot = bootstrap_connect(&path, "helper test")
        .await
        .expect("bootstrap");
    create_endpoint(&boot, "echo").await.expect("endpoint")
}

#[tokio::test]
async fn calls_dropped_unpolled_leave_nothing_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = endpoint(&dir).await;
    let made: Vec<_> = (0..100).map(|i| echo.call(i)).collect();
    assert_eq!(
        echo.pending(),
        100,
        "a call is pending from when it is made"
    );
    drop(made);
    assert_eq!(echo.pending(), 0);
    assert_eq!(echo.call(7).await.expect("call"), 7);
    assert_eq!(echo.pending(), 0);
}

#[tokio::test]
async fn calls_polled_out_of_order_get_their_own_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = endpoint(&dir).await;
    let first = echo.call(1);
    let second = echo.call(2);
    assert_eq!(second.await.expect("second"), 2);
    assert_eq!(first.await.expect("first"), 1);
}

#[tokio::test]
async fn a_call_with_too_many_descriptors_fails_and_leaves_nothing_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = endpoint(&dir).await;
    let fds: Vec<OwnedFd> = (0..=container_protocol::frame::MAX_FDS_PER_FRAME)
        .map(|_| std::fs::File::open("/dev/null").expect("open").into())
        .collect();
    let err = echo.call_with_fds(3, fds).await.expect_err("refused");
    assert!(matches!(err, ProtocolError::Encode { .. }), "{err}");
    assert_eq!(echo.pending(), 0);
    assert_eq!(echo.call(4).await.expect("call"), 4);
}
