//! `sd_notify` readiness, written by hand: one datagram to `$NOTIFY_SOCKET`.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Tells a `Type=notify` supervisor something ("READY=1", "STOPPING=1"). A no-op when no
/// supervisor asked for it.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name)
    } else {
        SocketAddr::from_pathname(std::path::Path::new(&path))
    };
    let result = addr.and_then(|addr| {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &addr)
    });
    if let Err(e) = result {
        tracing::warn!("sd_notify {state:?}: {e}");
    }
}
