//! `logs [-f] [-n N]`. The apiserver hands over the log's files (oldest first, the
//! current one last); they are read here, from the end for `-n`, never whole into
//! memory. `-f` follows the current file, and when the copier rotates it (the file is
//! renamed, and a fresh one takes its name) reads the old one to its end and goes on
//! with the next: nothing is lost unless the follower falls a whole log behind.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};

use anyhow::{bail, Result};
use container_protocol::api::{ApiRequest, ApiResponse};

use crate::client::{call, call_fds, ApiClient};

/// How much is read at once, forwards or backwards.
const BLOCK: usize = 64 * 1024;

async fn fetch(client: &ApiClient, id: &str) -> Result<(bool, Vec<File>)> {
    let req = ApiRequest::ContainerLogs { id: id.to_string() };
    let (reply, fds) = call_fds(client, req, vec![]).await?;
    let ApiResponse::Log { running } = reply else {
        bail!("unexpected answer from the apiserver")
    };
    Ok((running, fds.into_iter().map(File::from).collect()))
}

fn identity(file: &File) -> Option<(u64, u64)> {
    file.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// Where the last `n` lines of `files` (read as one text) begin: a file's index and an
/// offset in it. Reads backwards in blocks, only as far as those lines go.
fn tail_start(files: &[File], n: usize) -> std::io::Result<(usize, u64)> {
    let mut buf = vec![0u8; BLOCK];
    // The newline that ends the text ends its last line; it does not start one.
    let mut last_byte = true;
    let mut count = 0;
    for (index, file) in files.iter().enumerate().rev() {
        let mut end = file.metadata()?.len();
        while end > 0 {
            let start = end.saturating_sub(BLOCK as u64);
            let chunk = &mut buf[..(end - start) as usize];
            file.read_exact_at(chunk, start)?;
            for (i, b) in chunk.iter().enumerate().rev() {
                if *b == b'\n' && !std::mem::take(&mut last_byte) {
                    if count == n {
                        return Ok((index, start + i as u64 + 1));
                    }
                    count += 1;
                } else {
                    last_byte = false;
                }
            }
            end = start;
        }
    }
    Ok((0, 0))
}

/// Copies `file` from where it is read to its current end.
fn drain(file: &mut File, out: &mut impl Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; BLOCK];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(()),
            n => out.write_all(&buf[..n])?,
        }
    }
}

pub async fn logs(client: &ApiClient, id: &str, follow: bool, tail: Option<usize>) -> Result<i32> {
    let (running, mut files) = fetch(client, id).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (first, offset) = match tail {
        Some(0) => (files.len(), 0),
        Some(n) => tail_start(&files, n.saturating_sub(1))?,
        None => (0, 0),
    };
    if let Some(file) = files.get_mut(first) {
        std::io::Seek::seek(file, std::io::SeekFrom::Start(offset))?;
    }
    let mut current = None;
    for (i, mut file) in files.into_iter().enumerate() {
        if i < first {
            continue;
        }
        drain(&mut file, &mut out)?;
        current = Some(file);
    }
    out.flush()?;
    drop(out);
    if !(follow && running) {
        return Ok(0);
    }
    let current = match current {
        Some(file) => file,
        // `-n 0`, or no file yet: from the current file's end.
        None => match fetch(client, id).await?.1.pop() {
            Some(mut file) => {
                std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
                file
            }
            None => bail!("container {id} has no log"),
        },
    };
    follow_log(client, id, current).await
}

async fn follow_log(client: &ApiClient, id: &str, mut current: File) -> Result<i32> {
    let waiter = client.clone();
    let wait_id = id.to_string();
    let mut wait =
        Box::pin(async move { call(&waiter, ApiRequest::ContainerWait { id: wait_id }).await });
    let stdout = std::io::stdout();
    loop {
        drain(&mut current, &mut stdout.lock())?;
        stdout.lock().flush()?;
        if let Some(next) = rotated(client, id, &mut current).await? {
            current = next;
            continue;
        }
        tokio::select! {
            _ = &mut wait => {
                // What the workload wrote last, wherever it went.
                drain(&mut current, &mut stdout.lock())?;
                while let Some(next) = rotated(client, id, &mut current).await? {
                    current = next;
                    drain(&mut current, &mut stdout.lock())?;
                }
                stdout.lock().flush()?;
                return Ok(0);
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
        }
    }
}

/// When `current` is no longer the log's current file: prints the rest of it and every
/// file after it but the newest, and returns the newest (the current one now).
async fn rotated(client: &ApiClient, id: &str, current: &mut File) -> Result<Option<File>> {
    let (_, files) = fetch(client, id).await?;
    let ours = identity(current);
    match files.last() {
        None => return Ok(None),
        Some(newest) if identity(newest) == ours => return Ok(None),
        Some(_) => {}
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // Renamed away, so complete: the copier writes only to the current file.
    drain(current, &mut out)?;
    // Not listed any more: it went with a rotation; what is left starts at the oldest.
    let after = files
        .iter()
        .position(|f| identity(f) == ours)
        .map_or(0, |i| i + 1);
    let mut rest: Vec<File> = files.into_iter().skip(after).collect();
    let newest = rest.pop();
    for mut file in rest {
        drain(&mut file, &mut out)?;
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(texts: &[&str]) -> (tempfile::TempDir, Vec<File>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let p = dir.path().join(i.to_string());
                std::fs::write(&p, t).expect("write");
                File::open(p).expect("open")
            })
            .collect();
        (dir, files)
    }

    fn tail(texts: &[&str], n: usize) -> String {
        let (_dir, mut files) = files(texts);
        let (first, offset) = tail_start(&files, n.saturating_sub(1)).expect("tail");
        let mut out = Vec::new();
        for (i, f) in files.iter_mut().enumerate().skip(first) {
            if i == first {
                std::io::Seek::seek(f, std::io::SeekFrom::Start(offset)).expect("seek");
            }
            drain(f, &mut out).expect("drain");
        }
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn the_last_lines_across_files() {
        assert_eq!(tail(&["a\nb\n", "c\nd\n"], 1), "d\n");
        assert_eq!(tail(&["a\nb\n", "c\nd\n"], 3), "b\nc\nd\n");
        assert_eq!(tail(&["a\nb\n", "c\nd\n"], 9), "a\nb\nc\nd\n");
        assert_eq!(tail(&["a\nb\n", "c\nno newline"], 1), "no newline");
        assert_eq!(tail(&["a\nb\n", "c\nno newline"], 2), "c\nno newline");
        assert_eq!(tail(&["a\nb\n", ""], 1), "b\n");
        let long = format!("{}\nlast\n", "x".repeat(3 * BLOCK));
        assert_eq!(tail(&[&long], 1), "last\n");
        assert_eq!(tail(&[&long], 2), long);
    }
}
