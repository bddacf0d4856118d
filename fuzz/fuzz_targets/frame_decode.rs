//! The bytes a peer sends on any socket of the project: the length-delimited codec,
//! then the bincode body of every frame type a process decodes (the apiserver's
//! requests, the helpers' requests, the CLI's and the apiserver's view of replies).
//!
//! Properties: nothing panics, nothing hangs, and a frame that decodes encodes back
//! to one that decodes to the same value.

#![no_main]

use bytes::BytesMut;
use container_protocol::api::{ApiRequest, ApiResponse};
use container_protocol::bootstrap::{BootstrapRequest, BootstrapResponse};
use container_protocol::frame::{self, ClientFrame, ServerFrame};
use container_protocol::network::{NetworkRequest, NetworkResponse};
use container_protocol::sandbox::{SandboxRequest, SandboxResponse};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::Decoder;

/// Decodes `body` as `T`; if it decodes, the value must survive a round trip.
fn body<T: DeserializeOwned + Serialize + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(value) = frame::decode::<T>(bytes) {
        let encoded = frame::encode(&value).expect("a decoded frame encodes again");
        let again: T = frame::decode(&encoded[4..]).expect("an encoded frame decodes again");
        assert_eq!(
            format!("{value:?}"),
            format!("{again:?}"),
            "round trip changed the frame"
        );
    }
}

fn every_body(bytes: &[u8]) {
    body::<ClientFrame<ApiRequest>>(bytes);
    body::<ServerFrame<ApiResponse>>(bytes);
    body::<ClientFrame<NetworkRequest>>(bytes);
    body::<ServerFrame<NetworkResponse>>(bytes);
    body::<ClientFrame<SandboxRequest>>(bytes);
    body::<ServerFrame<SandboxResponse>>(bytes);
    body::<ClientFrame<BootstrapRequest>>(bytes);
    body::<ServerFrame<BootstrapResponse>>(bytes);
}

fuzz_target!(|data: &[u8]| {
    // The input as one frame body, as `rpc::serve` sees it after the codec.
    every_body(data);

    // The input as a byte stream, cut into frames by the codec the way a reader sees
    // it: arriving in two pieces, then EOF.
    let mut codec = frame::codec();
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut buf = BytesMut::new();
    for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(
                        frame.len() <= frame::MAX_FRAME,
                        "codec let an oversized frame through"
                    );
                    every_body(&frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = codec.decode_eof(&mut buf);
});
