//! Images made by the tests: OCI image layouts written from a busybox root filesystem,
//! layer by layer (a whiteout and an opaque directory among them), and a multi-arch
//! index. Real tools (`skopeo`, `podman`, the registry) take them from there.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

/// sha256 of `data`, as `sha256:<hex>`.
pub fn digest(data: &[u8]) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(data);
    format!(
        "sha256:{}",
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// One layer: entries added in order.
pub struct LayerBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        LayerBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

impl LayerBuilder {
    pub fn dir(mut self, name: &str) -> Self {
        let mut h = header(tar::EntryType::Directory, 0, 0o755);
        self.b.append_data(&mut h, name, std::io::empty()).unwrap();
        self
    }
    pub fn file(mut self, name: &str, data: &[u8], mode: u32) -> Self {
        let mut h = header(tar::EntryType::Regular, data.len() as u64, mode);
        self.b.append_data(&mut h, name, data).unwrap();
        self
    }
    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Symlink, 0, 0o777);
        self.b.append_link(&mut h, name, target).unwrap();
        self
    }
    /// A file whose name is written as given, `..` and all (what `append_data`
    /// refuses to write): for hostile layers.
    pub fn raw_file(mut self, name: &str, data: &[u8]) -> Self {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }
    /// Every file of `dir` (a real tree), under `prefix`.
    pub fn tree(mut self, dir: &Path) -> Self {
        self.b.follow_symlinks(false);
        self.b.append_dir_all(".", dir).unwrap();
        self
    }
    pub fn tar(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An image to write: its layers (uncompressed tars) and config.
pub struct Image {
    pub layers: Vec<Vec<u8>>,
    pub config: serde_json::Value,
    pub architecture: String,
}

impl Image {
    pub fn new(layers: Vec<Vec<u8>>, config: serde_json::Value) -> Image {
        Image {
            layers,
            config,
            architecture: "amd64".into(),
        }
    }
}

fn put(dir: &Path, data: &[u8]) -> (String, usize) {
    let d = digest(data);
    let path = dir
        .join("blobs/sha256")
        .join(d.trim_start_matches("sha256:"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    (d, data.len())
}

/// Writes `image` into the OCI layout at `dir` and returns its manifest descriptor.
pub fn write_image(dir: &Path, image: &Image) -> serde_json::Value {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in &image.layers {
        let blob = gzip(tar);
        let (d, size) = put(dir, &blob);
        layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": size}));
        diff_ids.push(digest(tar));
    }
    let config = json!({
        "architecture": image.architecture,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": image.config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let cbytes = serde_json::to_vec(&config).unwrap();
    let (cd, csize) = put(dir, &cbytes);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": csize},
        "layers": layers,
    });
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let (md, msize) = put(dir, &mbytes);
    json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md,
        "size": msize,
        "platform": {"os": "linux", "architecture": image.architecture},
    })
}

/// An OCI layout with `images`, each tagged `tag` in index.json (an index of several
/// platforms when there are several).
pub fn layout(dir: &Path, tag: &str, images: &[Image]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let descs: Vec<serde_json::Value> = images.iter().map(|i| write_image(dir, i)).collect();
    let top = if descs.len() == 1 {
        let mut d = descs[0].clone();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        d
    } else {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": descs,
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        let (d, size) = put(dir, &bytes);
        json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": d, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        })
    };
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [top]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    dir.to_path_buf()
}

/// The test image: busybox in layer 1; layer 2 adds /etc/motd, /data/{a,b} and
/// /opq/{old1,old2}; layer 3 whites out /etc/motd and /data/a and makes /opq opaque
/// with /opq/new. Its config has Entrypoint, Cmd, Env, WorkingDir, User, Labels,
/// StopSignal.
pub fn busybox_image(work: &Path) -> Image {
    let rootfs = crate::busybox_rootfs(work);
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    let base = LayerBuilder::default().tree(&rootfs).tar();
    let second = LayerBuilder::default()
        .file("etc/motd", b"hello from layer 2\n", 0o644)
        .dir("data")
        .file("data/a", b"a\n", 0o644)
        .file("data/b", b"b\n", 0o644)
        .dir("opq")
        .file("opq/old1", b"1\n", 0o644)
        .file("opq/old2", b"2\n", 0o644)
        .dir("home/app")
        .dir("srv")
        .tar();
    let third = LayerBuilder::default()
        .file("etc/.wh.motd", b"", 0o644)
        .file("data/.wh.a", b"", 0o644)
        .dir("opq")
        .file("opq/.wh..wh..opq", b"", 0o644)
        .file("opq/new", b"new\n", 0o644)
        .file("srv/marker", b"layer 3\n", 0o644)
        .tar();
    Image::new(
        vec![base, second, third],
        json!({
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo image-cmd; ls /opq"],
            "Env": ["PATH=/bin", "FROM_IMAGE=yes", "OVERRIDE=image"],
            "WorkingDir": "/srv",
            "Labels": {"org.example.from": "image"},
            "StopSignal": "SIGUSR1",
        }),
    )
}
