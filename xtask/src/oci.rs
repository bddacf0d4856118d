//! OCI image layouts made from directories with the system's `tar`, `gzip` and
//! `sha256sum`: the demo's image and the bench's, without a registry or a network.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn sha256_file(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("run sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum {} failed", path.display());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split_whitespace().next().context("sha256sum output")?;
    Ok(format!("sha256:{hex}"))
}

/// Writes an OCI layout at `dir`: one gzip layer per source directory (bottom first),
/// the config's `config` object, tagged `ref_name` (a full name such as
/// `localhost/demo:latest`). Returns the layer blobs and the uncompressed size.
pub fn layout(
    dir: &Path,
    sources: &[PathBuf],
    config: serde_json::Value,
    ref_name: &str,
) -> Result<(Vec<PathBuf>, u64)> {
    let _ = std::fs::remove_dir_all(dir);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let (mut layers, mut diff_ids, mut paths, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), 0u64);
    for (i, src) in sources.iter().enumerate() {
        let tar = dir.join(format!("layer{i}.tar"));
        let status = Command::new("tar")
            .arg("-C")
            .arg(src)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()?;
        if !status.success() {
            bail!("tar {}", src.display());
        }
        total += std::fs::metadata(&tar)?.len();
        diff_ids.push(sha256_file(&tar)?);
        let gz = dir.join(format!("layer{i}.tar.gz"));
        let status = Command::new("gzip")
            .arg("-c")
            .arg(&tar)
            .stdout(std::fs::File::create(&gz)?)
            .status()?;
        if !status.success() {
            bail!("gzip {}", tar.display());
        }
        std::fs::remove_file(&tar)?;
        let d = sha256_file(&gz)?;
        let size = std::fs::metadata(&gz)?.len();
        let blob = blobs.join(d.trim_start_matches("sha256:"));
        std::fs::rename(&gz, &blob)?;
        layers.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": size}));
        paths.push(blob);
    }
    let put = |bytes: Vec<u8>| -> Result<(String, usize)> {
        let tmp = dir.join("blob.tmp");
        std::fs::write(&tmp, &bytes)?;
        let d = sha256_file(&tmp)?;
        std::fs::rename(&tmp, blobs.join(d.trim_start_matches("sha256:")))?;
        Ok((d, bytes.len()))
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": arch, "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, cs) = put(serde_json::to_vec(&config)?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": layers,
    });
    let (md, ms) = put(serde_json::to_vec(&manifest)?)?;
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": ref_name}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok((paths, total))
}
