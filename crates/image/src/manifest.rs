//! Manifests, indexes and configs as registries and archives send them: OCI and
//! Docker v2 schema 2 (the same JSON shapes under other media types), parsed with
//! `oci-spec`'s types, and the choice of one manifest of an index for a platform.

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::error::{invalid, Result};
use crate::store::Platform;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What a registry is asked for, in order of preference.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Manifests and configs are small; a larger one is refused rather than read.
pub const MAX_MANIFEST: u64 = 4 << 20;
pub const MAX_CONFIG: u64 = 16 << 20;

/// A manifest or an index, told apart by media type (the JSON's own, else the one the
/// transport gave, else its shape).
pub enum Parsed {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

pub fn parse(bytes: &[u8], transport_type: Option<&str>) -> Result<(Parsed, String)> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(rename = "schemaVersion", default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("manifest is not JSON: {e}")))?;
    if probe.schema_version == Some(1) {
        return Err(invalid(
            "manifest is Docker schema 1, which is not supported (push it again with a current tool)",
        ));
    }
    let media = probe
        .media_type
        .clone()
        .or_else(|| transport_type.map(str::to_string))
        .unwrap_or_else(|| {
            if probe.manifests.is_some() {
                OCI_INDEX.to_string()
            } else {
                OCI_MANIFEST.to_string()
            }
        });
    match media.as_str() {
        OCI_INDEX | DOCKER_LIST => {
            let index: ImageIndex = serde_json::from_slice(bytes)
                .map_err(|e| invalid(format!("index: {e}")))?;
            Ok((Parsed::Index(Box::new(index)), media))
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: ImageManifest = serde_json::from_slice(bytes)
                .map_err(|e| invalid(format!("manifest: {e}")))?;
            Ok((Parsed::Manifest(Box::new(m)), media))
        }
        DOCKER_SCHEMA1 => Err(invalid("manifest is Docker schema 1, which is not supported")),
        other => Err(invalid(format!(
            "manifest media type {other:?} is not an image (expected an OCI or Docker v2 manifest or index)"
        ))),
    }
}

/// This host's platform, named as images name them.
pub fn host_platform() -> Platform {
    let (arch, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        other => (other, None),
    };
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: variant.map(str::to_string),
    }
}

/// `os/arch[/variant]`.
pub fn parse_platform(text: &str) -> Result<Platform> {
    let parts: Vec<&str> = text.split('/').collect();
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    match parts.as_slice() {
        [os, arch] if ok(os) && ok(arch) => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: None,
        }),
        [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: Some(v.to_string()),
        }),
        _ => Err(invalid(format!(
            "invalid platform {text:?}: expected os/arch[/variant]"
        ))),
    }
}

/// The manifest of `index` for `want`: os and architecture equal, and the variant
/// too when one is asked for. Attestations (platform unknown/unknown) never match.
pub fn choose(index: &ImageIndex, want: &Platform) -> Result<(Digest, String)> {
    let mut seen = Vec::new();
    for m in index.manifests() {
        let Some(p) = m.platform() else { continue };
        let os = p.os().to_string();
        let arch = p.architecture().to_string();
        let variant = p.variant().clone();
        seen.push(match &variant {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        });
        if os != want.os || arch != want.architecture {
            continue;
        }
        if let Some(v) = &want.variant {
            // arm64's only variant is v8, often left out.
            let implied = want.architecture == "arm64" && v == "v8" && variant.is_none();
            if variant.as_deref() != Some(v.as_str()) && !implied {
                continue;
            }
        }
        let digest = Digest::parse(m.digest().as_ref())?;
        return Ok((digest, m.media_type().to_string()));
    }
    Err(crate::error::ImageError::NotFound(format!(
        "no image for platform {want} in the index (it has {})",
        if seen.is_empty() {
            "none".to_string()
        } else {
            seen.join(", ")
        }
    )))
}

/// The parts of a config that the store needs: diff IDs and platform.
pub struct ConfigInfo {
    pub config: ImageConfiguration,
    pub diff_ids: Vec<Digest>,
    pub platform: Platform,
}

pub fn parse_config(bytes: &[u8]) -> Result<ConfigInfo> {
    let config: ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("image config: {e}")))?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| e.context("image config: rootfs.diff_ids"))?;
    let platform = Platform {
        os: config.os().to_string(),
        architecture: config.architecture().to_string(),
        variant: config.variant().clone(),
    };
    Ok(ConfigInfo {
        config,
        diff_ids,
        platform,
    })
}

/// Whether a layer of this media type is one we can unpack.
pub fn check_layer_type(media: &str) -> Result<()> {
    if media.contains("foreign") || media.contains("nondistributable") {
        return Err(invalid(format!(
            "layer media type {media} is a foreign layer, which is not supported"
        )));
    }
    let known = [
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        DOCKER_LAYER,
        "application/vnd.docker.image.rootfs.diff.tar",
    ];
    if known.contains(&media) || media.starts_with("application/vnd.oci.image.layer.") {
        Ok(())
    } else {
        Err(invalid(format!(
            "layer media type {media:?} is not a tar layer"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match() {
        assert!(parse_platform("linux/amd64").is_ok());
        assert_eq!(
            parse_platform("linux/arm/v7").unwrap().variant.as_deref(),
            Some("v7")
        );
        for bad in ["", "linux", "linux/", "a/b/c/d", "linux/am d64"] {
            assert!(parse_platform(bad).is_err(), "{bad}");
        }
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index: ImageIndex = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": d('a'), "size": 1, "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
                {"mediaType": OCI_MANIFEST, "digest": d('b'), "size": 1, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"mediaType": OCI_MANIFEST, "digest": d('c'), "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": OCI_MANIFEST, "digest": d('e'), "size": 1, "platform": {"os": "unknown", "architecture": "unknown"}},
                {"mediaType": OCI_MANIFEST, "digest": d('f'), "size": 1, "platform": {"os": "linux", "architecture": "arm64"}}
            ]
        }))
        .unwrap();
        let pick =
            |p: &str| choose(&index, &parse_platform(p).unwrap()).map(|(x, _)| x.to_string());
        assert_eq!(pick("linux/amd64").unwrap(), d('c'));
        assert_eq!(pick("linux/arm/v7").unwrap(), d('b'));
        assert_eq!(pick("linux/arm").unwrap(), d('a'));
        assert_eq!(pick("linux/arm64/v8").unwrap(), d('f'));
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(
            err.contains("no image for platform linux/s390x") && err.contains("linux/arm/v7"),
            "{err}"
        );
    }

    #[test]
    fn schema1_and_strangers_are_refused_by_name() {
        let e = parse(br#"{"schemaVersion":1,"name":"x"}"#, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("schema 1"), "{e}");
        let e = parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not an image"), "{e}");
        assert!(parse(b"nope", None).is_err());
    }
}
