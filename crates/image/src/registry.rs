//! `image pull` from OCI and Docker v2 registries, with `oci-client` for the protocol
//! (token and basic auth, manifests, ranged blob requests). Its `pull()` keeps layers
//! in memory, so only its pieces are used: every blob is streamed into the store,
//! hashed as it comes, and every digest is checked here (a manifest's by hashing the
//! bytes received, not by believing a header). Layers come three at a time, each
//! unpacked as soon as it is complete; a cut download is resumed from where it stopped
//! when the registry takes a range, and retried a few times.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use crate::auth::Credentials;
use crate::digest::Digest;
use crate::error::{invalid, ImageError, Result};
use crate::import::{self, LayerPlan};
use crate::manifest::{self, Parsed};
use crate::progress::{Event, Progress, Status, EVERY_BYTES};
use crate::reference::Reference;
use crate::store::{ImageRecord, Platform, Store};

const ATTEMPTS: usize = 4;
const PARALLEL: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub platform: Option<Platform>,
    /// `--tls-verify=false`: plain HTTP or a certificate nobody vouches for.
    pub insecure: bool,
    /// Registries (`host[:port]`) configured as insecure.
    pub insecure_registries: Vec<String>,
    pub credentials: Option<Credentials>,
}

/// Whether a registry may be reached without verified TLS: localhost (as Docker
/// treats it), one configured as insecure, or all with `--tls-verify=false`.
pub fn is_insecure(registry: &str, opts: &PullOptions) -> bool {
    let host = crate::reference::host_of(registry);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    opts.insecure
        || loopback
        || opts
            .insecure_registries
            .iter()
            .any(|r| r == registry || r == host)
}

struct Remote {
    client: Client,
    image: oci_client::Reference,
    auth: RegistryAuth,
    registry: String,
}

fn client(protocol: ClientProtocol, insecure: bool) -> Client {
    Client::new(ClientConfig {
        protocol,
        accept_invalid_certificates: insecure,
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(60)),
        ..ClientConfig::default()
    })
}

/// What went wrong, named for the user, with the kind decided here.
fn registry_error(registry: &str, what: &str, e: OciDistributionError) -> ImageError {
    use OciDistributionError as E;
    let msg = format!("registry {registry}: {what}");
    match &e {
        E::AuthenticationFailure(r) => ImageError::Permission(format!(
            "{msg}: authentication failed ({}); check `container registry login {registry}`",
            r.trim()
        )),
        E::UnauthorizedError { .. } => ImageError::Permission(format!(
            "{msg}: not authorized; log in with `container registry login {registry}`"
        )),
        E::ImageManifestNotFoundError(_) => ImageError::NotFound(format!("{msg}: not found")),
        E::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope
                .errors
                .iter()
                .map(|x| format!("{:?}: {}", x.code, x.message))
                .collect();
            let text = codes.join("; ");
            if text.contains("Unauthorized") || text.contains("Denied") {
                ImageError::Permission(format!(
                    "{msg}: {text}; log in with `container registry login {registry}`"
                ))
            } else if text.contains("Unknown") || text.contains("NotFound") {
                ImageError::NotFound(format!("{msg}: {text}"))
            } else {
                ImageError::Unavailable(format!("{msg}: {text}"))
            }
        }
        E::ServerError { code: 404, .. } => ImageError::NotFound(format!("{msg}: not found")),
        E::ServerError {
            code: 401 | 403, ..
        } => ImageError::Permission(format!(
            "{msg}: not authorized; log in with `container registry login {registry}`"
        )),
        E::RequestError(r) => ImageError::Unavailable(format!("{msg}: {}", error_chain(r))),
        _ => ImageError::Unavailable(format!("{msg}: {e}")),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

impl Remote {
    /// Connects and authenticates: HTTPS first; for an insecure registry, HTTPS with
    /// any certificate, then plain HTTP, as Docker does.
    async fn connect(reference: &Reference, opts: &PullOptions) -> Result<Remote> {
        let registry = reference.api_registry().to_string();
        let image: oci_client::Reference = format!("{registry}/{}:latest", reference.repository)
            .parse()
            .map_err(|e| invalid(format!("reference {reference}: {e}")))?;
        let auth = match &opts.credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let insecure = is_insecure(&reference.registry, opts);
        let mut tries = vec![(ClientProtocol::Https, insecure)];
        if insecure {
            tries.push((ClientProtocol::Http, true));
        }
        let mut last = None;
        for (protocol, skip_verify) in tries {
            let client = client(protocol, skip_verify);
            match client.auth(&image, &auth, RegistryOperation::Pull).await {
                Ok(_) => {
                    return Ok(Remote {
                        client,
                        image,
                        auth,
                        registry: reference.registry.clone(),
                    })
                }
                Err(e @ OciDistributionError::RequestError(_)) => last = Some(e),
                Err(e) => return Err(registry_error(&reference.registry, "log in", e)),
            }
        }
        Err(registry_error(
            &reference.registry,
            "connect",
            last.unwrap_or(OciDistributionError::GenericError(None)),
        ))
    }

    fn at(&self, digest_or_tag: &str) -> Result<oci_client::Reference> {
        let sep = if digest_or_tag.starts_with("sha256:") {
            "@"
        } else {
            ":"
        };
        format!(
            "{}/{}{sep}{digest_or_tag}",
            self.image.registry(),
            self.image.repository()
        )
        .parse()
        .map_err(|e| invalid(format!("reference: {e}")))
    }

    /// A manifest or index, whose digest is computed from the bytes and must be
    /// `expected` when one is known.
    async fn manifest(&self, what: &str, expected: Option<&Digest>) -> Result<(Vec<u8>, Digest)> {
        let r = self.at(what)?;
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&r, &self.auth, manifest::ACCEPTED)
            .await
            .map_err(|e| registry_error(&self.registry, &format!("manifest {what}"), e))?;
        if bytes.len() as u64 > manifest::MAX_MANIFEST {
            return Err(invalid(format!(
                "registry {}: manifest {what} is larger than {} bytes",
                self.registry,
                manifest::MAX_MANIFEST
            )));
        }
        let actual = Digest::of(&bytes);
        if let Some(want) = expected {
            if &actual != want {
                return Err(invalid(format!(
                    "registry {}: manifest {what}: digest mismatch: expected {want}, got {actual}; discarded",
                    self.registry
                )));
            }
        }
        Ok((bytes.to_vec(), actual))
    }

    /// Streams a blob into the store, resuming after a cut where the registry allows.
    async fn blob(
        &self,
        store: &Store,
        digest: &Digest,
        media: &str,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<()> {
        let desc = OciDescriptor {
            media_type: media.to_string(),
            digest: digest.to_string(),
            size: size as i64,
            ..OciDescriptor::default()
        };
        let id = digest.short().to_string();
        let mut w = store.blob_writer(&format!("blob {digest}"), Some(size))?;
        let mut last_err = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                tracing::info!("pull {digest}: retry {attempt} from byte {}", w.written());
            }
            let offset = w.written();
            let response = if offset == 0 {
                self.client
                    .pull_blob_stream(&self.image, &desc)
                    .await
                    .map(|s| (s, true))
            } else {
                self.client
                    .pull_blob_stream_partial(&self.image, &desc, offset, None)
                    .await
                    .map(|r| match r {
                        oci_client::client::BlobResponse::Full(s) => (s, true),
                        oci_client::client::BlobResponse::Partial(s) => (s, false),
                    })
            };
            let (mut stream, full) = match response {
                Ok(s) => s,
                Err(e) => {
                    last_err = Some(registry_error(&self.registry, &format!("blob {digest}"), e));
                    continue;
                }
            };
            if full && offset > 0 {
                // The registry sent it all again: start over.
                w = store.blob_writer(&format!("blob {digest}"), Some(size))?;
            }
            let mut reported = w.written();
            let mut cut = None;
            while let Some(chunk) = stream.stream.next().await {
                match chunk {
                    Ok(bytes) => w.write(&bytes)?,
                    Err(e) => {
                        cut = Some(e);
                        break;
                    }
                }
                if w.written() - reported >= EVERY_BYTES {
                    reported = w.written();
                    progress.event(Event {
                        id: id.clone(),
                        status: Status::Downloading,
                        current: reported,
                        total: size,
                    });
                }
            }
            match cut {
                None if w.written() == size => {
                    w.commit(store, Some(digest))?;
                    return Ok(());
                }
                None => {
                    last_err = Some(ImageError::Unavailable(format!(
                        "registry {}: blob {digest}: the download ended at byte {} of {size}",
                        self.registry,
                        w.written()
                    )));
                }
                Some(e) => {
                    last_err = Some(ImageError::Unavailable(format!(
                        "registry {}: blob {digest}: {e}",
                        self.registry
                    )))
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ImageError::Unavailable("download failed".into())))
    }
}

/// Pulls `reference` into the store and tags it.
pub async fn pull(
    store: &Arc<Store>,
    reference: &Reference,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<ImageRecord> {
    let _adding = store.adding().await;
    progress.event(Event {
        id: reference.to_string(),
        status: Status::Resolving,
        current: 0,
        total: 0,
    });
    let remote = Remote::connect(reference, opts).await?;
    let want = opts
        .platform
        .clone()
        .unwrap_or_else(manifest::host_platform);
    let first = reference
        .digest
        .as_ref()
        .map(|d| d.to_string())
        .or_else(|| reference.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let (mut bytes, mut digest) = remote.manifest(&first, reference.digest.as_ref()).await?;
    let mut media: Option<String> = None;
    let mut chosen_from_index = false;
    let m = loop {
        let (parsed, mt) = manifest::parse(&bytes, media.as_deref())?;
        store.put_blob("manifest", &bytes, Some(&digest))?;
        match parsed {
            Parsed::Index(index) => {
                if chosen_from_index {
                    return Err(invalid("an index inside an index is not supported"));
                }
                let (d, m) = manifest::choose(&index, &want)
                    .map_err(|e| e.context(format!("pull {reference}")))?;
                let (b, d2) = remote.manifest(&d.to_string(), Some(&d)).await?;
                bytes = b;
                digest = d2;
                media = Some(m);
                chosen_from_index = true;
            }
            Parsed::Manifest(m) => break (m, mt),
        }
    };
    let (m, media) = m;
    if opts.platform.is_some() || !chosen_from_index {
        // A single manifest names its platform in its config; checked below.
    }
    let config = Digest::parse(m.config().digest().as_ref())?;
    if !store.has_blob(&config) {
        let size = m.config().size();
        if size > manifest::MAX_CONFIG {
            return Err(invalid(format!(
                "image config of {size} bytes is larger than {}",
                manifest::MAX_CONFIG
            )));
        }
        let _one = store.lock_key(&format!("blob {config}")).await;
        if !store.has_blob(&config) {
            remote
                .blob(
                    store,
                    &config,
                    m.config().media_type().as_ref(),
                    size,
                    &crate::progress::Silent,
                )
                .await?;
        }
    }
    let plan = import::plan(store, &digest, &media, &m)?;
    if let Some(p) = &opts.platform {
        let got = &plan.info.platform;
        if got.os != p.os || got.architecture != p.architecture {
            return Err(ImageError::NotFound(format!(
                "pull {reference}: the image is for {got}, not {p}"
            )));
        }
    }
    for l in &plan.layers {
        progress.event(Event {
            id: l.blob.short().to_string(),
            status: if store.layer(&l.chain_id).is_some() {
                Status::Exists
            } else {
                Status::Waiting
            },
            current: 0,
            total: l.size,
        });
    }
    let remote = &remote;
    // Futures made in a loop, not by a closure: a closure over the layer's borrow is
    // not general enough for a Send future.
    let mut futures = Vec::new();
    for l in &plan.layers {
        futures.push(fetch_layer(store, remote, l, progress));
    }
    let fetched: Vec<Result<u64>> = futures::stream::iter(futures)
        .buffered(PARALLEL)
        .collect()
        .await;
    let sizes = fetched.into_iter().collect::<Result<Vec<u64>>>()?;
    let tags: Vec<Reference> = reference
        .tag
        .iter()
        .map(|t| reference.with_tag(t))
        .collect();
    let record = import::record(store, &plan, &sizes, &tags, Some(reference))?;
    progress.event(Event {
        id: reference.to_string(),
        status: Status::Done,
        current: 0,
        total: 0,
    });
    Ok(record)
}

/// One layer: downloaded unless its blob or its unpacked layer is here, then unpacked.
async fn fetch_layer(
    store: &Arc<Store>,
    remote: &Remote,
    l: &LayerPlan,
    progress: &dyn Progress,
) -> Result<u64> {
    let id = l.blob.short().to_string();
    if store.layer(&l.chain_id).is_none() || !store.has_blob(&l.blob) {
        let _one = store.lock_key(&format!("blob {}", l.blob)).await;
        if !store.has_blob(&l.blob) {
            remote
                .blob(store, &l.blob, &l.media_type, l.size, progress)
                .await?;
        }
    }
    let size = import::unpack(store, l, progress).await?;
    progress.event(Event {
        id,
        status: Status::Done,
        current: l.size,
        total: l.size,
    });
    Ok(size)
}

/// `registry login`: the credentials are tried once against the registry.
/// A registry with basic auth answers any challenge happily; only a request shows
/// whether it takes the credentials. A repository that does not exist (404) means
/// they were taken.
pub async fn login(reference: &Reference, opts: &PullOptions) -> Result<()> {
    let remote = Remote::connect(reference, opts).await?;
    match remote.manifest("latest", None).await {
        Ok(_) => Ok(()),
        Err(ImageError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
