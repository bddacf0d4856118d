//! Frame layout: a 4-byte big-endian length (tokio-util's `LengthDelimitedCodec`) and a
//! bincode-2 body. File descriptors ride as `SCM_RIGHTS` on the first byte of the frame
//! that announces them (see `transport`).

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Encoder, LengthDelimitedCodec};

/// Bumped on any incompatible change of the frame or message layout.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame either side accepts. Larger ones close the connection: nothing this
/// protocol carries legitimately comes near it, and the bound stops a peer from making
/// the daemon allocate without limit.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// Most descriptors one frame may carry (stdio of an attached run needs three).
pub const MAX_FDS_PER_FRAME: usize = 8;

pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

/// Client → server.
#[derive(Debug, Serialize, Deserialize)]
pub enum ClientFrame<Req> {
    /// Always the first frame of a connection.
    Hello {
        version: u32,
        service: String,
    },
    Call {
        id: u64,
        fds: u8,
        body: Req,
    },
}

/// Server → client.
#[derive(Debug, Serialize, Deserialize)]
pub enum ServerFrame<Resp> {
    Hello {
        version: u32,
    },
    /// The connection is refused (credentials, version, service); it is closed next.
    Refused {
        message: String,
    },
    Reply {
        id: u64,
        fds: u8,
        body: Result<Resp, crate::RemoteError>,
    },
}

pub fn encode<T: Serialize>(value: &T) -> Result<Bytes, String> {
    let body = bincode::serde::encode_to_vec(value, config()).map_err(|e| e.to_string())?;
    let mut out = BytesMut::with_capacity(body.len() + 4);
    codec()
        .encode(Bytes::from(body), &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out.freeze())
}

pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let (value, used) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err(format!("{} trailing bytes", body.len() - used));
    }
    Ok(value)
}
