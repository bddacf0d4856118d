//! The byte streams around the tar: compression detected by its magic, bytes counted
//! on both sides of the decompressor, the ratio and size limits checked as they pass,
//! and the diff ID hashed over every uncompressed byte.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use super::{Limits, RATIO_SLACK};
use crate::digest::Hasher;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// By the stream's first bytes, as containerd does: a media type can lie.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Why a stream was cut: a limit, named for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "layer is larger than the limit of {limit} bytes uncompressed (--image-max-layer-size)"
    )]
    Size { limit: u64 },
    #[error("layer decompresses more than {ratio} times its compressed size ({out} bytes from {input}): a decompression bomb? (--image-max-ratio)")]
    Ratio { ratio: u64, out: u64, input: u64 },
}

/// Counts what passes.
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// The uncompressed side: hashed, counted, limited.
pub struct Guarded<'a> {
    inner: Box<dyn Read + 'a>,
    compressed: Rc<Cell<u64>>,
    compression: Compression,
    pub(super) out: u64,
    pub(super) hasher: Hasher,
    limits: Limits,
    /// The limit that cut the stream, for the message.
    pub(super) tripped: Option<LimitError>,
}

impl<'a> Guarded<'a> {
    pub fn new(input: impl Read + 'a, limits: Limits) -> io::Result<Guarded<'a>> {
        let compressed = Rc::new(Cell::new(0));
        let mut buffered = BufReader::with_capacity(
            256 * 1024,
            Counted {
                inner: input,
                count: compressed.clone(),
            },
        );
        let compression = Compression::detect(buffered.fill_buf()?);
        let inner: Box<dyn Read + 'a> = match compression {
            Compression::None => Box::new(buffered),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        };
        Ok(Guarded {
            inner,
            compressed,
            compression,
            out: 0,
            hasher: Hasher::new(),
            limits,
            tripped: None,
        })
    }

    fn check(&mut self) -> Result<(), LimitError> {
        if self.out > self.limits.layer_bytes {
            return Err(LimitError::Size {
                limit: self.limits.layer_bytes,
            });
        }
        if self.compression != Compression::None {
            let input = self.compressed.get();
            let allowed = input
                .saturating_mul(self.limits.ratio)
                .saturating_add(RATIO_SLACK);
            if self.out > allowed {
                return Err(LimitError::Ratio {
                    ratio: self.limits.ratio,
                    out: self.out,
                    input,
                });
            }
        }
        Ok(())
    }
}

impl Read for Guarded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.tripped {
            return Err(io::Error::other(e.to_string()));
        }
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        self.hasher.update(&buf[..n]);
        if let Err(e) = self.check() {
            self.tripped = Some(e.clone());
            return Err(io::Error::other(e.to_string()));
        }
        Ok(n)
    }
}
