//! Image records and references. An image is known by its id, the digest of its
//! config (as Docker's image ids); `refs.json` maps `name:tag` to ids. Both are written
//! atomically, the record before any reference to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Store;
use crate::digest::Digest;
use crate::error::{invalid, ImageError, Result};
use crate::reference::Reference;

pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// One layer of an image: the blob it came as and the directory it is unpacked in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub blob: Digest,
    pub media_type: String,
    /// Compressed size.
    pub size: u64,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// Bytes of file content unpacked.
    #[serde(default)]
    pub unpacked: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub version: u32,
    /// The config's digest.
    pub id: Digest,
    pub manifest: Digest,
    pub manifest_media_type: String,
    /// `name@sha256:…` of the manifest, for every repository it came from.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    pub platform: Platform,
    pub layers: Vec<LayerRef>,
    /// The config's `created`, as written there.
    #[serde(default)]
    pub created: Option<String>,
    /// When it came into this store (seconds since the epoch).
    pub added: u64,
}

impl ImageRecord {
    /// Bytes of the unpacked layers.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.unpacked).sum()
    }

    /// Every blob the image needs: manifest, config, layers.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut v = vec![self.manifest.clone(), self.id.clone()];
        v.extend(self.layers.iter().map(|l| l.blob.clone()));
        v
    }

    pub fn chain_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.chain_id.clone()).collect()
    }
}

/// An image as listed: the record and the references that name it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageEntry {
    pub record: ImageRecord,
    pub tags: Vec<Reference>,
}

type Refs = BTreeMap<String, Digest>;

impl Store {
    fn load_refs(&self) -> Result<Refs> {
        let path = self.refs_path();
        if !path.exists() {
            return Ok(Refs::new());
        }
        container_store::read_json(&path).map_err(|e| ImageError::Invalid(e.to_string()))
    }

    fn save_refs(&self, refs: &Refs) -> Result<()> {
        container_store::write_json(&self.refs_path(), refs)
            .map_err(|e| ImageError::Invalid(e.to_string()))
    }

    pub fn load_record(&self, id: &Digest) -> Result<ImageRecord> {
        let path = self.record_path(id);
        if !path.exists() {
            return Err(ImageError::NotFound(format!(
                "image {} not found",
                id.short()
            )));
        }
        let rec: ImageRecord =
            container_store::read_json(&path).map_err(|e| ImageError::Invalid(e.to_string()))?;
        if rec.version > RECORD_VERSION {
            return Err(invalid(format!(
                "{}: record version {} is newer than this build understands ({RECORD_VERSION})",
                path.display(),
                rec.version
            )));
        }
        if &rec.id != id {
            return Err(invalid(format!(
                "{}: the record is for image {}",
                path.display(),
                rec.id
            )));
        }
        Ok(rec)
    }

    /// Writes `record` (its blobs and layers are in the store) and points `tags` at it.
    /// A tag that named another image moves, as `docker pull` and `docker tag` do.
    pub fn add_image(&self, mut record: ImageRecord, tags: &[Reference]) -> Result<ImageRecord> {
        let _meta = self.meta();
        if let Ok(old) = self.load_record(&record.id) {
            for d in old.repo_digests {
                if !record.repo_digests.contains(&d) {
                    record.repo_digests.push(d);
                }
            }
            record.added = old.added;
        }
        record.repo_digests.sort();
        record.version = RECORD_VERSION;
        container_store::write_json(&self.record_path(&record.id), &record)
            .map_err(|e| ImageError::Invalid(e.to_string()))?;
        if !tags.is_empty() {
            let mut refs = self.load_refs()?;
            for t in tags.iter().filter(|t| t.tag.is_some()) {
                refs.insert(
                    t.with_tag(t.tag.as_deref().unwrap_or("latest")).to_string(),
                    record.id.clone(),
                );
            }
            self.save_refs(&refs)?;
        }
        Ok(record)
    }

    /// Every image with its tags, newest first.
    pub fn list(&self) -> Result<Vec<ImageEntry>> {
        let refs = {
            let _meta = self.meta();
            self.load_refs()?
        };
        let mut out = Vec::new();
        for id in self.record_ids() {
            let Ok(record) = self.load_record(&id) else {
                continue;
            };
            let tags = refs
                .iter()
                .filter(|(_, v)| **v == id)
                .filter_map(|(k, _)| Reference::parse(k).ok())
                .collect();
            out.push(ImageEntry { record, tags });
        }
        out.sort_by(|a, b| {
            b.record
                .added
                .cmp(&a.record.added)
                .then(a.record.id.cmp(&b.record.id))
        });
        Ok(out)
    }

    pub(crate) fn record_ids(&self) -> Vec<Digest> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("images")) else {
            return vec![];
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let hex = name.strip_suffix(".json")?;
                Digest::parse(&format!("sha256:{hex}")).ok()
            })
            .collect()
    }

    /// The image `text` names: a reference (`alpine`, `name:tag`, `name@sha256:…`),
    /// an id (`sha256:…`) or a unique prefix of one (at least 4 hex digits), as
    /// Docker resolves them.
    pub fn resolve(&self, text: &str) -> Result<ImageRecord> {
        let not_found = || ImageError::NotFound(format!("image {text} not found"));
        let hexish = |s: &str| {
            s.len() >= 4
                && s.len() <= 64
                && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let id_text = text.strip_prefix("sha256:").unwrap_or(text);
        if text.starts_with("sha256:")
            || (hexish(text) && Reference::parse(text).is_err())
            || (hexish(text) && text.len() == 64)
        {
            return self
                .by_id_prefix(id_text)
                .and_then(|id| self.load_record(&id))
                .map_err(|_| not_found());
        }
        let reference = Reference::parse(text)?;
        if let Some(d) = &reference.digest {
            let name = reference.name();
            let want = format!("{name}@{d}");
            for id in self.record_ids() {
                if let Ok(r) = self.load_record(&id) {
                    if r.repo_digests.contains(&want) {
                        return Ok(r);
                    }
                }
            }
            return Err(not_found());
        }
        let refs = {
            let _meta = self.meta();
            self.load_refs()?
        };
        if let Some(id) = refs.get(&reference.to_string()) {
            return self.load_record(id);
        }
        // A short id that also parses as a name (`abcdef`): Docker tries it as an id.
        if hexish(text) {
            if let Ok(id) = self.by_id_prefix(text) {
                return self.load_record(&id);
            }
        }
        Err(not_found())
    }

    fn by_id_prefix(&self, prefix: &str) -> Result<Digest> {
        let found: Vec<Digest> = self
            .record_ids()
            .into_iter()
            .filter(|d| d.hex().starts_with(prefix))
            .collect();
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(ImageError::NotFound(format!("image {prefix} not found"))),
            _ => Err(invalid(format!("image id prefix {prefix} is ambiguous"))),
        }
    }

    /// `image tag SRC DST`.
    pub fn tag(&self, src: &str, dst: &str) -> Result<Reference> {
        let record = self.resolve(src)?;
        let dst = Reference::parse(dst)?;
        if dst.digest.is_some() {
            return Err(invalid(format!(
                "cannot tag with a digest reference: {dst}"
            )));
        }
        let _meta = self.meta();
        let mut refs = self.load_refs()?;
        refs.insert(dst.to_string(), record.id.clone());
        self.save_refs(&refs)?;
        Ok(dst)
    }

    /// Tags pointing at `id`.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<Reference>> {
        let _meta = self.meta();
        Ok(self
            .load_refs()?
            .into_iter()
            .filter(|(_, v)| v == id)
            .filter_map(|(k, _)| Reference::parse(&k).ok())
            .collect())
    }

    /// `image rm NAME`: a tag given by name is removed; when it was the image's last
    /// (or the image was named by id), the record goes too. `in_use` says which
    /// containers use the image; they refuse it unless `force`. Content is left to
    /// GC. Returns what was untagged and what was deleted, as Docker prints them.
    pub fn remove(
        &self,
        text: &str,
        force: bool,
        in_use: &dyn Fn(&Digest) -> Vec<String>,
    ) -> Result<Vec<String>> {
        let record = self.resolve(text)?;
        let _meta = self.meta();
        let mut refs = self.load_refs()?;
        let tags: Vec<String> = refs
            .iter()
            .filter(|(_, v)| **v == record.id)
            .map(|(k, _)| k.clone())
            .collect();
        let by_name = Reference::parse(text)
            .ok()
            .filter(|r| r.digest.is_none())
            .map(|r| r.to_string())
            .filter(|r| tags.contains(r));
        let mut out = Vec::new();
        // Untagging one of several names touches no container.
        if let Some(name) = &by_name {
            if tags.len() > 1 {
                refs.remove(name);
                self.save_refs(&refs)?;
                out.push(format!("Untagged: {name}"));
                return Ok(out);
            }
        }
        let users = in_use(&record.id);
        if !users.is_empty() && !force {
            return Err(ImageError::Conflict(format!(
                "image {} is in use by container {} (remove the container first, or use -f)",
                text,
                users.join(", ")
            )));
        }
        if by_name.is_none() && tags.len() > 1 && !force {
            return Err(ImageError::Conflict(format!(
                "image {} is referenced by several names ({}): remove them by name, or use -f",
                record.id.short(),
                tags.join(", ")
            )));
        }
        for t in &tags {
            refs.remove(t);
            out.push(format!("Untagged: {t}"));
        }
        self.save_refs(&refs)?;
        let path = self.record_path(&record.id);
        std::fs::remove_file(&path)
            .map_err(ImageError::io(format!("remove {}", path.display())))?;
        super::sync_dir(&self.dir.join("images"))?;
        out.push(format!("Deleted: {}", record.id));
        Ok(out)
    }

    /// Drops references whose image record is gone (a repair).
    pub(crate) fn drop_refs(&self, names: &[String]) -> Result<()> {
        let _meta = self.meta();
        let mut refs = self.load_refs()?;
        for n in names {
            refs.remove(n);
        }
        self.save_refs(&refs)
    }

    pub(crate) fn all_refs(&self) -> Result<Vec<(String, Digest)>> {
        let _meta = self.meta();
        Ok(self.load_refs()?.into_iter().collect())
    }

    pub(crate) fn remove_record(&self, id: &Digest) -> Result<()> {
        let _meta = self.meta();
        let path = self.record_path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io(format!("remove {}", path.display()))(e)),
        }
    }
}
