//! Crash-safe writes: a reader sees the old file or the new one, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::StoreError;

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path`
/// and fsyncs the directory, so the rename itself survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    write_replacing(path, bytes, mode, true)
}

/// As [`write_atomic`] without the fsyncs: for files made again at every start (a
/// container's /etc files), which a power cut may lose but no reader ever sees torn.
/// Each fsync costs milliseconds on a busy disk, on the path of every `run`.
pub fn write_replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    write_replacing(path, bytes, mode, false)
}

fn write_replacing(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> Result<(), StoreError> {
    let io = |step: &'static str| {
        move |source: std::io::Error| StoreError::Io {
            path: path.to_path_buf(),
            step,
            source,
        }
    };
    let dir = path.parent().ok_or_else(|| StoreError::Io {
        path: path.to_path_buf(),
        step: "parent",
        source: std::io::Error::other("no parent directory"),
    })?;
    fs::create_dir_all(dir).map_err(io("create directory"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io("create temporary file"))?;
        f.write_all(bytes).map_err(io("write"))?;
        if durable {
            f.sync_all().map_err(io("fsync"))?;
        }
        fs::rename(&tmp, path).map_err(io("rename"))?;
        if !durable {
            return Ok(());
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory"))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether `name` is one of our temporary files (left by a write that failed or was cut
/// short), which nothing reads and a start may remove.
pub fn is_temp_file(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp.")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    write_atomic(path, &json_bytes(path, value)?, 0o644)
}

/// As [`write_json`] without the fsyncs ([`write_replace`]): for records whose every
/// version is void after a power cut anyway.
pub fn write_json_replace<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    write_replace(path, &json_bytes(path, value)?, 0o644)
}

fn json_bytes<T: serde::Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    let bytes = fs::read(path).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        step: "read",
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
