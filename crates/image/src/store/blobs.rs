//! Content-addressed blobs. A blob is written under `tmp/`, hashed as the bytes pass,
//! and renamed into `blobs/sha256/<hex>` only once its digest (and size, when known)
//! match what was asked for; a mismatch discards it with an error naming both.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

use super::{sync_dir, Store};
use crate::digest::{Digest, Hasher};
use crate::error::{invalid, ImageError, Result};

/// A blob being written. Dropped before [`BlobWriter::commit`], it leaves nothing.
pub struct BlobWriter {
    tmp: PathBuf,
    file: Option<File>,
    hasher: Hasher,
    written: u64,
    /// At most this many bytes are taken (a registry's declared size, a limit).
    limit: Option<u64>,
    what: String,
    /// Moved into the store: nothing to remove on drop.
    done: bool,
}

impl BlobWriter {
    /// Bytes written so far: where a resumed download goes on from.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Adds bytes; refuses to go past the limit (a blob larger than declared).
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let total = self.written + bytes.len() as u64;
        if let Some(limit) = self.limit {
            if total > limit {
                return Err(invalid(format!(
                    "{}: more than the {limit} bytes declared",
                    self.what
                )));
            }
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| invalid("blob already committed"))?;
        file.write_all(bytes).map_err(ImageError::io(format!(
            "{}: write {}",
            self.what,
            self.tmp.display()
        )))?;
        self.hasher.update(bytes);
        self.written = total;
        Ok(())
    }

    /// Copies all of `r` in.
    pub fn copy_from(&mut self, r: &mut dyn Read) -> Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ImageError::io(format!("{}: read", self.what))(e)),
            };
            self.write(&buf[..n])?;
        }
    }

    /// Verifies and moves the blob into the store. `expected`: the digest it must
    /// have (`None`: whatever it hashes to, for content we made ourselves).
    pub fn commit(mut self, store: &Store, expected: Option<&Digest>) -> Result<Digest> {
        let file = self
            .file
            .take()
            .ok_or_else(|| invalid("blob already committed"))?;
        let actual = std::mem::take(&mut self.hasher).finish();
        if let Some(want) = expected {
            if &actual != want {
                return Err(invalid(format!(
                    "{}: digest mismatch: expected {want}, got {actual} ({} bytes); the blob is discarded",
                    self.what, self.written
                )));
            }
        }
        if let Some(limit) = self.limit.filter(|_| expected.is_some()) {
            if self.written != limit {
                return Err(invalid(format!(
                    "{}: {} bytes, {limit} declared; the blob is discarded",
                    self.what, self.written
                )));
            }
        }
        file.sync_all()
            .map_err(ImageError::io(format!("{}: fsync", self.what)))?;
        let dest = store.blob_path(&actual);
        std::fs::rename(&self.tmp, &dest).map_err(ImageError::io(format!(
            "{}: rename into the store",
            self.what
        )))?;
        self.done = true;
        sync_dir(&store.dir.join("blobs/sha256"))?;
        Ok(actual)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Store {
    /// A writer for a new blob; `what` names it in errors (`layer sha256:…`).
    pub fn blob_writer(&self, what: &str, limit: Option<u64>) -> Result<BlobWriter> {
        let tmp = self.tmp_path("blob");
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(ImageError::io(format!("{what}: create {}", tmp.display())))?;
        Ok(BlobWriter {
            tmp,
            file: Some(file),
            hasher: Hasher::new(),
            written: 0,
            limit,
            what: what.to_string(),
            done: false,
        })
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        File::open(self.blob_path(d)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ImageError::NotFound(format!("blob {d} is not in the store"))
            } else {
                ImageError::io(format!("open blob {d}"))(e)
            }
        })
    }

    /// A small blob (manifest, config) read whole, at most `limit` bytes, and checked
    /// against its digest again: what is parsed is what was verified.
    pub fn read_blob(&self, d: &Digest, limit: u64) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        self.open_blob(d)?
            .take(limit + 1)
            .read_to_end(&mut data)
            .map_err(ImageError::io(format!("read blob {d}")))?;
        if data.len() as u64 > limit {
            return Err(invalid(format!("blob {d} is larger than {limit} bytes")));
        }
        if &Digest::of(&data) != d {
            return Err(invalid(format!(
                "blob {d} in the store does not match its digest (run `container system check --fix`)"
            )));
        }
        Ok(data)
    }

    /// Stores bytes held in memory (a manifest, a config), checked against `expected`.
    pub fn put_blob(&self, what: &str, bytes: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        if let Some(d) = expected {
            if self.has_blob(d) && &Digest::of(bytes) == d {
                return Ok(d.clone());
            }
        }
        let mut w = self.blob_writer(what, None)?;
        w.write(bytes)?;
        w.commit(self, expected)
    }

    /// Every blob in the store, with its size.
    pub fn list_blobs(&self) -> Vec<(String, u64)> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("blobs/sha256")) else {
            return vec![];
        };
        entries
            .flatten()
            .map(|e| {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                (e.file_name().to_string_lossy().into_owned(), size)
            })
            .collect()
    }

    /// Hashes a stored blob again.
    pub fn verify_blob(&self, d: &Digest) -> Result<()> {
        let mut f = self.open_blob(d)?;
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(ImageError::io(format!("read blob {d}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let actual = h.finish();
        if &actual != d {
            return Err(invalid(format!("blob {d} hashes to {actual}")));
        }
        Ok(())
    }
}
