//! Running the `nft` binary: one batch per call on stdin, and reading a table back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

#[derive(Debug)]
pub(crate) enum NftError {
    Spawn(std::io::Error),
    Failed(String),
    Json(serde_json::Error),
}

#[derive(Debug, Clone)]
pub(crate) struct Nft {
    program: PathBuf,
}

impl Nft {
    pub(crate) fn new(program: PathBuf) -> Self {
        Nft { program }
    }

    pub(crate) fn program(&self) -> &Path {
        &self.program
    }

    /// Applies `batch` (a JSON document) as one transaction: `nft -f` commits the
    /// whole file or nothing, which is what keeps a failed call from leaving half a
    /// network behind.
    pub(crate) fn apply(&self, batch: &str) -> Result<(), NftError> {
        self.run(&["-j", "-f", "-"], Some(batch)).map(drop)
    }

    /// The table as `nft -j list table` prints it, or `None` when it does not exist.
    pub(crate) fn list_table(&self, table: &str) -> Result<Option<Value>, NftError> {
        match self.run(&["-j", "list", "table", "inet", table], None) {
            Ok(stdout) => serde_json::from_slice(&stdout)
                .map(Some)
                .map_err(NftError::Json),
            // nft has no exit code for ENOENT; LC_ALL=C below keeps this text stable.
            Err(NftError::Failed(msg)) if msg.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<Vec<u8>, NftError> {
        let mut child = Command::new(&self.program)
            .args(args)
            // strerror() text is matched above and shown to users; keep it untranslated.
            .env("LC_ALL", "C")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(NftError::Spawn)?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A write error means nft exited early; its stderr below says why.
            let _ = pipe.write_all(input.as_bytes());
        }
        let out = child.wait_with_output().map_err(NftError::Spawn)?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        // JSON input has no source positions; nft prefixes each error with a
        // meaningless "internal:0:0-0: ".
        let message = stderr
            .lines()
            .map(|line| {
                line.strip_prefix("internal:0:0-0: ")
                    .unwrap_or(line)
                    .trim_end()
            })
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        Err(NftError::Failed(if message.is_empty() {
            format!("nft exited with {}", out.status)
        } else {
            message
        }))
    }
}
