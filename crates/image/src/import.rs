//! What a pull and a load share once a manifest is in hand: the config read and
//! checked, the layers' chain IDs computed, each layer unpacked (once, shared), and the
//! image recorded with its tags, last.

use std::sync::Arc;

use oci_spec::image::ImageManifest;

use crate::digest::{chain_ids, Digest};
use crate::error::{invalid, ImageError, Result};
use crate::manifest::{self, ConfigInfo};
use crate::progress::{Event, Progress, Status};
use crate::reference::Reference;
use crate::store::{ImageRecord, LayerRef, Store};

/// One layer to fetch or find, and to unpack.
#[derive(Debug, Clone)]
pub struct LayerPlan {
    pub blob: Digest,
    pub media_type: String,
    pub size: u64,
    pub diff_id: Digest,
    pub chain_id: Digest,
    pub parent: Option<Digest>,
}

pub struct Plan {
    pub manifest: Digest,
    pub manifest_media_type: String,
    pub config: Digest,
    pub info: ConfigInfo,
    pub layers: Vec<LayerPlan>,
}

/// The layers of `m`, paired with the config's diff IDs. The config must be in the
/// store already.
pub fn plan(
    store: &Store,
    manifest_digest: &Digest,
    manifest_media_type: &str,
    m: &ImageManifest,
) -> Result<Plan> {
    let config = Digest::parse(m.config().digest().as_ref())?;
    let bytes = store.read_blob(&config, manifest::MAX_CONFIG)?;
    let info = manifest::parse_config(&bytes)?;
    if info.diff_ids.len() != m.layers().len() {
        return Err(invalid(format!(
            "the manifest has {} layers and the config {} diff IDs",
            m.layers().len(),
            info.diff_ids.len()
        )));
    }
    let chains = chain_ids(&info.diff_ids);
    let mut layers = Vec::new();
    for (i, l) in m.layers().iter().enumerate() {
        let media = l.media_type().to_string();
        manifest::check_layer_type(&media)?;
        layers.push(LayerPlan {
            blob: Digest::parse(l.digest().as_ref())?,
            media_type: media,
            size: l.size(),
            diff_id: info.diff_ids[i].clone(),
            chain_id: chains[i].clone(),
            parent: i.checked_sub(1).map(|p| chains[p].clone()),
        });
    }
    Ok(Plan {
        manifest: manifest_digest.clone(),
        manifest_media_type: manifest_media_type.to_string(),
        config,
        info,
        layers,
    })
}

/// Unpacks one layer of `plan` (its blob is in the store), reporting progress.
pub async fn unpack(store: &Store, layer: &LayerPlan, progress: &dyn Progress) -> Result<u64> {
    let id = layer.blob.short().to_string();
    if let Some(meta) = store.layer(&layer.chain_id) {
        return Ok(meta.report.content_bytes);
    }
    progress.event(Event {
        id: id.clone(),
        status: Status::Unpacking,
        current: 0,
        total: layer.size,
    });
    let mut limits = *store.limits();
    limits.layer_bytes = limits.layer_bytes.min(limits.image_bytes);
    let meta = store
        .unpack_layer(
            &layer.blob,
            &layer.diff_id,
            &layer.chain_id,
            layer.parent.as_ref(),
            limits,
        )
        .await?;
    Ok(meta.report.content_bytes)
}

/// Unpacks every layer (two at a time: the machine's cores), then records the image.
pub async fn finish(
    store: &Arc<Store>,
    plan: &Plan,
    tags: &[Reference],
    repo: Option<&Reference>,
    progress: &dyn Progress,
) -> Result<ImageRecord> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    let mut futures = Vec::new();
    for l in &plan.layers {
        futures.push(unpack(store, l, progress));
    }
    let sizes: Vec<u64> = stream::iter(futures).buffered(2).try_collect().await?;
    record(store, plan, &sizes, tags, repo)
}

/// Writes the record and its tags, once every layer is complete.
pub fn record(
    store: &Store,
    plan: &Plan,
    sizes: &[u64],
    tags: &[Reference],
    repo: Option<&Reference>,
) -> Result<ImageRecord> {
    let total: u64 = plan
        .layers
        .iter()
        .filter_map(|l| store.layer(&l.chain_id))
        .map(|m| m.size)
        .sum();
    if total > store.limits().image_bytes {
        return Err(invalid(format!(
            "image is larger than the limit of {} bytes uncompressed (--image-max-image-size)",
            store.limits().image_bytes
        )));
    }
    for l in &plan.layers {
        if store.layer(&l.chain_id).is_none() {
            return Err(ImageError::Invalid(format!(
                "layer {} is not complete",
                l.chain_id.short()
            )));
        }
    }
    let layers = plan
        .layers
        .iter()
        .zip(sizes.iter().copied().chain(std::iter::repeat(0)))
        .map(|(l, unpacked)| LayerRef {
            blob: l.blob.clone(),
            media_type: l.media_type.clone(),
            size: l.size,
            diff_id: l.diff_id.clone(),
            chain_id: l.chain_id.clone(),
            unpacked,
        })
        .collect();
    let repo_digests = repo
        .map(|r| vec![format!("{}@{}", r.name(), plan.manifest)])
        .unwrap_or_default();
    let created = plan.info.config.created().clone();
    store.add_image(
        ImageRecord {
            version: 0,
            id: plan.config.clone(),
            manifest: plan.manifest.clone(),
            manifest_media_type: plan.manifest_media_type.clone(),
            repo_digests,
            platform: plan.info.platform.clone(),
            layers,
            created,
            added: container_store::unix_now(),
        },
        tags,
    )
}
