//! Frame layout: a 4-byte big-endian length and a bincode-2 body. File descriptors ride as `SCM_RIGHTS` on the first byte of the frame
//! that announces them (see `transport`).

use bytes::{Buf, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::codec::Decoder;

/// Bumped on any incompatible change of the frame or message layout.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame either side accepts. Larger ones close the connection: nothing this
/// protocol carries legitimately comes near it, and the bound stops a peer from making
/// the daemon allocate without limit.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// Most descriptors one frame may carry (stdio of an attached run needs three).
pub const MAX_FDS_PER_FRAME: usize = 8;

/// Largest frame a server reads before the peer's hello: the hello is a version and a
/// service name, so a connection that has not said who it is costs almost nothing.
pub const MAX_HELLO_FRAME: usize = 1024;

/// Bytes of the length prefix.
const HEAD: usize = 4;

/// Cuts a byte stream into frames without allocating ahead of the bytes that arrived.
///
/// tokio-util's `LengthDelimitedCodec` reserves the announced length as soon as it has
/// read a header, so a peer that sends only "4 MiB follows" makes the reader hold 4 MiB.
/// Here the buffer grows only as the reader fills it.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max: usize,
}

impl FrameCodec {
    pub fn new(max: usize) -> Self {
        FrameCodec { max }
    }

    /// Changes the limit for the frames after this one (a server lifts it after the hello).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, std::io::Error> {
        let Some(head) = src.get(..HEAD) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > self.max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "a frame of {len} bytes is over the limit of {} bytes",
                    self.max
                ),
            ));
        }
        if src.len() < HEAD + len {
            return Ok(None);
        }
        src.advance(HEAD);
        Ok(Some(src.split_to(len)))
    }
}

/// The codec every reader uses once a connection is past its hello.
pub fn codec() -> FrameCodec {
    FrameCodec::new(MAX_FRAME)
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
    // Encoded behind room for its length, so a large answer (`ls` of 1,000
    // containers) is not copied again to put the length in front.
    let mut out = vec![0u8; HEAD];
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|e| e.to_string())?;
    let len = out.len() - HEAD;
    if len > MAX_FRAME {
        return Err(format!(
            "a frame of {len} bytes is over the limit of {MAX_FRAME} bytes"
        ));
    }
    out[..HEAD].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(Bytes::from(out))
}

pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let (value, used) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err(format!("{} trailing bytes", body.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    /// A header announcing 4 MiB − 1 must not make the reader reserve 4 MiB: the buffer
    /// grows only with what arrives.
    #[test]
    fn a_bare_header_reserves_nothing() {
        let mut codec = codec();
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u32((MAX_FRAME - 1) as u32);
        buf.put_slice(b"abc");
        assert!(codec.decode(&mut buf).expect("valid header").is_none());
        assert!(
            buf.capacity() < 4096,
            "the codec reserved {} bytes ahead of the data",
            buf.capacity()
        );
    }

    #[test]
    fn frames_over_the_limit_are_refused_and_whole_frames_come_out() {
        let mut hello = FrameCodec::new(MAX_HELLO_FRAME);
        let mut buf = BytesMut::new();
        buf.put_u32(MAX_HELLO_FRAME as u32 + 1);
        assert!(hello.decode(&mut buf).is_err());

        let frame = encode(&ClientFrame::<()>::Hello {
            version: PROTOCOL_VERSION,
            service: "x".into(),
        })
        .expect("encode");
        let mut buf = BytesMut::from(&frame[..]);
        buf.extend_from_slice(&frame[..3]);
        let body = hello.decode(&mut buf).expect("decode").expect("a frame");
        assert!(matches!(
            decode::<ClientFrame<()>>(&body),
            Ok(ClientFrame::Hello { .. })
        ));
        assert!(hello.decode(&mut buf).expect("partial").is_none());
        assert_eq!(buf.len(), 3);
    }
}
