//! `image load` and `image save`. Three shapes are read:
//!
//! * docker-archive, as `docker save` and `podman save` write it: `manifest.json`
//!   naming each image's config, tags and layer files (`<id>/layer.tar`, or
//!   `blobs/sha256/<hex>` when an OCI `index.json` stands beside it, as Docker 25+
//!   writes);
//! * OCI archive: an OCI image layout in a tar (`oci-layout`, `index.json`, blobs);
//! * OCI layout directory, the same unpacked.
//!
//! A tar is read once, front to back (it may be a pipe): every file goes into the blob
//! store as it passes, verified against its name where the name is a digest; nothing
//! is ever written by a name from the archive. Then the images are put together from
//! what is in the store. `save` writes docker-archive with an OCI layout inside, which
//! both `docker load` and `podman load` read.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{invalid, ImageError, Result};
use crate::import;
use crate::manifest::{self, Parsed};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::store::{ImageRecord, Store};

const MAX_META: u64 = 4 << 20;
const NAME_ANNOTATION: &str = "io.containerd.image.name";
const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Debug, Serialize)]
struct DockerEntryOut {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// What a load brought in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Loaded {
    pub id: String,
    pub tags: Vec<String>,
}

/// Names of the archive's files, cleaned (no `..` can climb: names are only keys).
fn key(raw: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// The files of an archive, as blobs in the store, by name.
#[derive(Default)]
struct Files {
    blobs: BTreeMap<String, (Digest, u64)>,
    small: BTreeMap<String, Vec<u8>>,
    links: BTreeMap<String, String>,
}

impl Files {
    fn blob(&self, name: &str) -> Option<&(Digest, u64)> {
        let name = key(Path::new(name));
        let mut n = name.clone();
        for _ in 0..8 {
            if let Some(b) = self.blobs.get(&n) {
                return Some(b);
            }
            n = self.links.get(&n)?.clone();
        }
        None
    }
}

/// Reads a tar (docker-archive or OCI archive) from `input` into the store.
pub async fn load_tar(
    store: &Arc<Store>,
    input: std::fs::File,
    progress: &dyn Progress,
) -> Result<Vec<Loaded>> {
    let _adding = store.adding().await;
    let s = store.clone();
    let files = tokio::task::spawn_blocking(move || read_tar(&s, input))
        .await
        .map_err(|e| invalid(format!("load: {e}")))??;
    assemble(store, &files, progress).await
}

fn read_tar(store: &Store, input: std::fs::File) -> Result<Files> {
    let mut files = Files::default();
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, input));
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("load: not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("load: malformed archive: {e}")))?;
        let name = key(&entry
            .path()
            .map_err(|e| invalid(format!("load: entry name: {e}")))?);
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Ok(Some(target)) = entry.link_name() {
                    let base = Path::new(&name)
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_default();
                    let target = if entry.header().entry_type() == tar::EntryType::Link {
                        key(&target)
                    } else {
                        key(&base.join(&target))
                    };
                    files.links.insert(name, target);
                }
                continue;
            }
            _ => continue,
        }
        let is_meta = matches!(
            name.as_str(),
            "manifest.json" | "index.json" | "oci-layout" | "repositories"
        );
        if is_meta {
            let mut buf = Vec::new();
            (&mut entry)
                .take(MAX_META + 1)
                .read_to_end(&mut buf)
                .map_err(|e| invalid(format!("load: read {name}: {e}")))?;
            if buf.len() as u64 > MAX_META {
                return Err(invalid(format!(
                    "load: {name} is larger than {MAX_META} bytes"
                )));
            }
            files.small.insert(name, buf);
            continue;
        }
        let expected = digest_in_name(&name);
        let size = entry.header().size().unwrap_or(0);
        let mut w = store.blob_writer(&format!("archive file {name}"), Some(size))?;
        w.copy_from(&mut entry)?;
        let d = w.commit(store, expected.as_ref())?;
        files.blobs.insert(name, (d, size));
    }
    Ok(files)
}

/// `blobs/sha256/<hex>`, `<hex>.json` and `<hex>.tar` (podman's docker-archive) name
/// their content's digest.
fn digest_in_name(name: &str) -> Option<Digest> {
    if let Some(hex) = name.strip_prefix("blobs/sha256/") {
        return Digest::parse(&format!("sha256:{hex}")).ok();
    }
    let hex = name
        .strip_suffix(".json")
        .or_else(|| name.strip_suffix(".tar"))?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// Reads an OCI layout directory (held by `dir`) into the store.
pub async fn load_dir(
    store: &Arc<Store>,
    dir: std::os::fd::OwnedFd,
    progress: &dyn Progress,
) -> Result<Vec<Loaded>> {
    let _adding = store.adding().await;
    let root = container_rootfs::Root::from_fd(dir, "layout directory")
        .map_err(|e| invalid(e.to_string()))?;
    let read_small = |name: &str| -> Result<Vec<u8>> {
        root.read(Path::new(name), MAX_META as usize)
            .map_err(|e| invalid(format!("load: {e}")))
    };
    let mut files = Files::default();
    let index = read_small("index.json")?;
    files.small.insert("index.json".into(), index.clone());
    if let Ok(m) = read_small("manifest.json") {
        files.small.insert("manifest.json".into(), m);
    }
    // Every blob the index reaches, copied in and verified.
    let mut todo: Vec<Digest> = index_digests(&index)?;
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let name = format!("blobs/sha256/{}", d.hex());
        let fd = root
            .open_at(Path::new(&name), nix::fcntl::OFlag::O_RDONLY)
            .map_err(|e| invalid(format!("load: {e}")))?;
        let mut file = std::fs::File::from(fd);
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
            return Err(invalid(format!("load: {name} is not a regular file")));
        }
        let mut w = store.blob_writer(&format!("layout file {name}"), Some(size))?;
        w.copy_from(&mut file)?;
        w.commit(store, Some(&d))?;
        files.blobs.insert(name, (d.clone(), size));
        // Manifests and indexes name more blobs.
        if size <= manifest::MAX_MANIFEST {
            if let Ok(bytes) = store.read_blob(&d, manifest::MAX_MANIFEST) {
                if let Ok((parsed, _)) = manifest::parse(&bytes, None) {
                    match parsed {
                        Parsed::Index(i) => todo.extend(
                            i.manifests()
                                .iter()
                                .filter_map(|m| Digest::parse(m.digest().as_ref()).ok()),
                        ),
                        Parsed::Manifest(m) => {
                            todo.extend(Digest::parse(m.config().digest().as_ref()).ok());
                            todo.extend(
                                m.layers()
                                    .iter()
                                    .filter_map(|l| Digest::parse(l.digest().as_ref()).ok()),
                            );
                        }
                    }
                }
            }
        }
    }
    assemble(store, &files, progress).await
}

fn index_digests(index: &[u8]) -> Result<Vec<Digest>> {
    let (parsed, _) = manifest::parse(index, Some(manifest::OCI_INDEX))?;
    let Parsed::Index(i) = parsed else {
        return Err(invalid("load: index.json is not an index"));
    };
    i.manifests()
        .iter()
        .map(|m| Digest::parse(m.digest().as_ref()))
        .collect()
}

/// Puts images together from the archive's files, now in the store.
async fn assemble(
    store: &Arc<Store>,
    files: &Files,
    progress: &dyn Progress,
) -> Result<Vec<Loaded>> {
    // Docker's RepoTags, by config digest: the names `docker save` meant.
    let mut docker_tags: BTreeMap<Digest, Vec<Reference>> = BTreeMap::new();
    let docker: Option<Vec<DockerEntry>> = match files.small.get("manifest.json") {
        Some(b) => Some(
            serde_json::from_slice(b).map_err(|e| invalid(format!("load: manifest.json: {e}")))?,
        ),
        None => None,
    };
    if let Some(entries) = &docker {
        for e in entries {
            let (config, _) = files.blob(&e.config).ok_or_else(|| {
                invalid(format!(
                    "load: manifest.json names {} which is not in the archive",
                    e.config
                ))
            })?;
            let tags = e
                .repo_tags
                .iter()
                .flatten()
                .map(|t| Reference::parse(t))
                .collect::<Result<Vec<_>>>()
                .map_err(|e| e.context("load: manifest.json RepoTags"))?;
            docker_tags.entry(config.clone()).or_default().extend(tags);
        }
    }
    let mut out = Vec::new();
    if let Some(index) = files.small.get("index.json") {
        let (parsed, _) = manifest::parse(index, Some(manifest::OCI_INDEX))?;
        let Parsed::Index(index) = parsed else {
            return Err(invalid("load: index.json is not an index"));
        };
        for m in index.manifests() {
            let mut tags = Vec::new();
            let ann = m.annotations().clone().unwrap_or_default();
            for k in [NAME_ANNOTATION, REF_ANNOTATION] {
                if let Some(n) = ann.get(k) {
                    // A bare tag ("latest") names no repository: it cannot be a name here.
                    if n.contains('/') || n.contains(':') {
                        if let Ok(r) = Reference::parse(n) {
                            if !tags.contains(&r) {
                                tags.push(r);
                            }
                        }
                    }
                }
            }
            let digest = Digest::parse(m.digest().as_ref())?;
            let record = load_manifest(
                store,
                &digest,
                Some(m.media_type().as_ref()),
                &tags,
                &docker_tags,
                progress,
            )
            .await?;
            out.push(loaded(store, &record)?);
        }
        return Ok(out);
    }
    let Some(entries) = docker else {
        return Err(invalid(
            "load: the archive has neither manifest.json (docker-archive) nor index.json (OCI)",
        ));
    };
    for e in &entries {
        let (config, config_size) = files
            .blob(&e.config)
            .cloned()
            .ok_or_else(|| invalid("load: config missing"))?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let (d, size) = files.blob(l).cloned().ok_or_else(|| {
                invalid(format!(
                    "load: manifest.json names layer {l} which is not in the archive"
                ))
            })?;
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                "size": size,
                "digest": d.to_string(),
            }));
        }
        // A docker-archive of the old shape has no manifest: one is written for it.
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::DOCKER_MANIFEST,
            "config": {"mediaType": manifest::DOCKER_CONFIG, "size": config_size, "digest": config.to_string()},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&m).map_err(|e| invalid(e.to_string()))?;
        let d = store.put_blob("manifest", &bytes, None)?;
        let record = load_manifest(
            store,
            &d,
            Some(manifest::DOCKER_MANIFEST),
            &[],
            &docker_tags,
            progress,
        )
        .await?;
        out.push(loaded(store, &record)?);
    }
    Ok(out)
}

fn loaded(store: &Store, record: &ImageRecord) -> Result<Loaded> {
    Ok(Loaded {
        id: record.id.to_string(),
        tags: store
            .tags_of(&record.id)?
            .iter()
            .map(|r| r.to_string())
            .collect(),
    })
}

/// One manifest of an archive (an index in it is resolved for this host).
async fn load_manifest(
    store: &Arc<Store>,
    digest: &Digest,
    media: Option<&str>,
    tags: &[Reference],
    docker_tags: &BTreeMap<Digest, Vec<Reference>>,
    progress: &dyn Progress,
) -> Result<ImageRecord> {
    let mut digest = digest.clone();
    let mut media = media.map(str::to_string);
    for _ in 0..4 {
        let bytes = store.read_blob(&digest, manifest::MAX_MANIFEST)?;
        let (parsed, mt) = manifest::parse(&bytes, media.as_deref())?;
        match parsed {
            Parsed::Index(i) => {
                let (d, m) = manifest::choose(&i, &manifest::host_platform())?;
                digest = d;
                media = Some(m);
            }
            Parsed::Manifest(m) => {
                let plan = import::plan(store, &digest, &mt, &m)?;
                let mut all: Vec<Reference> = tags.to_vec();
                for t in docker_tags.get(&plan.config).into_iter().flatten() {
                    if !all.contains(t) {
                        all.push(t.clone());
                    }
                }
                return import::finish(store, &plan, &all, None, progress).await;
            }
        }
    }
    Err(invalid("load: indexes nested too deep"))
}

/// `image save`: the images as docker-archive with an OCI layout inside.
pub fn save(
    store: &Store,
    records: &[(ImageRecord, Vec<Reference>)],
    out: impl Write,
) -> Result<()> {
    let mut b = tar::Builder::new(out);
    let io = |e: std::io::Error| ImageError::io("save: write the archive")(e);
    let mut added = std::collections::HashSet::new();
    let mut index = Vec::new();
    let mut docker = Vec::new();
    let add_bytes = |b: &mut tar::Builder<_>, name: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).map_err(io)
    };
    add_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for (r, tags) in records {
        for d in r.blobs() {
            if !added.insert(d.clone()) {
                continue;
            }
            let mut f = store.open_blob(&d)?;
            let size = f.metadata().map_err(io)?.len();
            let mut h = tar::Header::new_gnu();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), &mut f)
                .map_err(io)?;
        }
        let manifest_size = std::fs::metadata(store.blob_path(&r.manifest))
            .map_err(io)?
            .len();
        let entry = |name: Option<&Reference>| {
            let mut e = serde_json::json!({
                "mediaType": r.manifest_media_type,
                "digest": r.manifest.to_string(),
                "size": manifest_size,
            });
            if let Some(n) = name {
                e["annotations"] = serde_json::json!({
                    NAME_ANNOTATION: n.to_string(),
                    REF_ANNOTATION: n.tag.clone().unwrap_or_default(),
                });
            }
            e
        };
        if tags.is_empty() {
            index.push(entry(None));
        }
        for t in tags {
            index.push(entry(Some(t)));
        }
        docker.push(DockerEntryOut {
            config: format!("blobs/sha256/{}", r.id.hex()),
            repo_tags: tags
                .iter()
                .map(|t| {
                    format!(
                        "{}:{}",
                        t.familiar_name(),
                        t.tag.clone().unwrap_or_default()
                    )
                })
                .collect(),
            layers: r
                .layers
                .iter()
                .map(|l| format!("blobs/sha256/{}", l.blob.hex()))
                .collect(),
        });
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": index,
    });
    add_bytes(
        &mut b,
        "index.json",
        &serde_json::to_vec(&index).map_err(|e| invalid(e.to_string()))?,
    )?;
    add_bytes(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&docker).map_err(|e| invalid(e.to_string()))?,
    )?;
    b.into_inner().map_err(io)?.flush().map_err(io)?;
    Ok(())
}
