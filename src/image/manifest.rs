//! Manifests and indexes (OCI image spec and Docker's schema 2), decoded
//! from untrusted bytes under a size cap. Hand-written serde types: the few
//! fields the store needs, checked strictly (the `oci-spec` crate would
//! bring derive_builder, getset, strum and regex into every build, the
//! fuzz build included, for types we would still have to check by hand).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::{ImageError, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The OCI annotation naming an image in a layout's index.json (a tag or a
/// full reference).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full reference.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// How a layer's bytes are compressed, as its media type says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression a layer media type announces, or an error for a media
/// type that is not a layer the store can unpack.
pub fn layer_compression(media_type: &str) -> Result<Compression> {
    use Compression::*;
    let base = media_type
        .replace(".nondistributable.", ".")
        .replace(".foreign.", ".");
    Ok(match base.as_str() {
        "application/vnd.oci.image.layer.v1.tar" | DOCKER_LAYER => None,
        "application/vnd.oci.image.layer.v1.tar+gzip" | DOCKER_LAYER_GZIP => Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Zstd,
        _ => {
            return Err(ImageError::MediaType {
                what: "layer".into(),
                media_type: media_type.to_string(),
            });
        }
    })
}

/// A platform, as an index entry and a config describe it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

/// A content descriptor: what a manifest or index points at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Where a non-distributable layer can be fetched (not followed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// An image manifest: a config and the layers, lowest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index or Docker manifest list: one manifest per platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A decoded manifest-like document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

/// What a document's shape says it is, when it has no media type.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    layers: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    config: Option<serde::de::IgnoredAny>,
}

/// Decodes a manifest or index (`what` names it in errors). `max` caps
/// its size; `media_type` is what the sender or the referring descriptor
/// announced, when known (it must agree with the document's own).
pub fn decode(bytes: &[u8], max: u64, what: &str, media_type: Option<&str>) -> Result<Document> {
    if bytes.len() as u64 > max {
        return Err(ImageError::TooLarge {
            what: what.to_string(),
            limit: max,
            unit: "bytes",
        });
    }
    let bad = |reason: String| ImageError::invalid(what, reason);
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if probe.schema_version != Some(2) {
        return Err(bad(format!(
            "schemaVersion {:?}: only schema 2 is supported",
            probe.schema_version
        )));
    }
    // An HTTP Content-Type may carry parameters (`; charset=utf-8`).
    let announced = media_type
        .map(|b| b.split(';').next().unwrap_or("").trim())
        .filter(|b| !b.is_empty());
    let mt = match (probe.media_type.as_deref(), announced) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad(format!(
                "media type {a:?} in the document, {b:?} announced"
            )));
        }
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    let is_index = match mt {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(ImageError::MediaType {
                what: what.to_string(),
                media_type: other.to_string(),
            });
        }
        None => match (
            probe.manifests.is_some(),
            probe.layers.is_some() || probe.config.is_some(),
        ) {
            (true, false) => true,
            (false, true) => false,
            _ => return Err(bad("neither a manifest nor an index".into())),
        },
    };
    if is_index {
        let i: Index = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        Ok(Document::Index(i))
    } else {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        check_manifest(&m, what)?;
        Ok(Document::Manifest(m))
    }
}

/// The rules a manifest must follow beyond its JSON shape.
fn check_manifest(m: &Manifest, what: &str) -> Result<()> {
    if !m.config.media_type.is_empty()
        && m.config.media_type != OCI_CONFIG
        && m.config.media_type != DOCKER_CONFIG
    {
        return Err(ImageError::MediaType {
            what: format!("{what}: config"),
            media_type: m.config.media_type.clone(),
        });
    }
    for (i, l) in m.layers.iter().enumerate() {
        layer_compression(&l.media_type).map_err(|_| ImageError::MediaType {
            what: format!("{what}: layers[{i}]"),
            media_type: l.media_type.clone(),
        })?;
    }
    Ok(())
}

/// The host's platform as an OCI platform: `linux/amd64`, `linux/arm64/v8`...
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        "riscv64" => ("riscv64", None),
        "s390x" => ("s390x", None),
        other => (other, None),
    };
    Platform {
        architecture: architecture.into(),
        os: std::env::consts::OS.into(),
        variant: variant.map(Into::into),
        os_version: None,
    }
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

/// Picks the index entry for `want`: same OS and architecture; among
/// those the exact variant first, then one without a variant (`arm64` and
/// `arm64/v8` are the same), then any. Attestation manifests and entries
/// of other media types are skipped.
pub fn select_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    fn normal<'v>(arch: &str, v: Option<&'v str>) -> Option<&'v str> {
        match (arch, v) {
            ("arm64", Some("v8")) => None,
            (_, v) => v.filter(|v| !v.is_empty()),
        }
    }
    let normal = |v| normal(&want.architecture, v);
    let wanted_variant = normal(want.variant.as_deref());
    let mut best: Option<(u8, &Descriptor)> = None;
    for d in &index.manifests {
        if !matches!(
            d.media_type.as_str(),
            OCI_MANIFEST | DOCKER_MANIFEST | OCI_INDEX | DOCKER_LIST | ""
        ) || d
            .annotations
            .get("vnd.docker.reference.type")
            .is_some_and(|t| t == "attestation-manifest")
        {
            continue;
        }
        let Some(p) = &d.platform else {
            // An entry without a platform (an OCI layout's single image).
            best = best.or(Some((0, d)));
            continue;
        };
        if p.os != want.os || p.architecture != want.architecture {
            continue;
        }
        let v = normal(p.variant.as_deref());
        let rank = if v == wanted_variant {
            3
        } else if v.is_none() {
            2
        } else {
            1
        };
        if best.is_none_or(|(r, _)| rank > r) {
            best = Some((rank, d));
        }
    }
    best.map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest_json(layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":10}},"layers":[{{"mediaType":"{layer_type}","digest":"{D2}","size":20}}]}}"#
        )
    }

    #[test]
    fn decodes_manifests_and_refuses_what_it_cannot_handle() {
        let ok = manifest_json("application/vnd.oci.image.layer.v1.tar+zstd");
        let Document::Manifest(m) = decode(ok.as_bytes(), 1 << 20, "m", None).unwrap() else {
            panic!("not a manifest");
        };
        assert_eq!(m.layers[0].size, 20);
        let e = decode(ok.as_bytes(), 10, "m", None).unwrap_err();
        assert!(e.to_string().contains("more than 10 bytes"), "{e}");
        let e = decode(
            manifest_json("application/x-evil").as_bytes(),
            1 << 20,
            "m",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unsupported media type"), "{e}");
        let e = decode(ok.as_bytes(), 1 << 20, "m", Some(OCI_INDEX)).unwrap_err();
        assert!(e.to_string().contains("announced"), "{e}");
        let e = decode(br#"{"schemaVersion":1}"#, 1 << 20, "m", None).unwrap_err();
        assert!(e.to_string().contains("schema 2"), "{e}");
        let neg = ok.replace("\"size\":20", "\"size\":-1");
        assert!(decode(neg.as_bytes(), 1 << 20, "m", None).is_err());
        let bad_digest = ok.replace(D2, "sha256:../../x");
        assert!(decode(bad_digest.as_bytes(), 1 << 20, "m", None).is_err());
    }

    #[test]
    fn picks_the_host_platform() {
        let entry = |arch: &str, variant: Option<&str>, d: &str| {
            format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"{arch}"{}}}}}"#,
                variant
                    .map(|v| format!(r#","variant":"{v}""#))
                    .unwrap_or_default()
            )
        };
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{},{},{}]}}"#,
            entry("arm", Some("v6"), D1),
            entry("arm64", None, D2),
            entry("amd64", None, D1)
        );
        let Document::Index(i) = decode(idx.as_bytes(), 1 << 20, "i", None).unwrap() else {
            panic!("not an index");
        };
        let p = |a: &str, v: Option<&str>| Platform {
            architecture: a.into(),
            os: "linux".into(),
            variant: v.map(Into::into),
            os_version: None,
        };
        assert_eq!(
            select_platform(&i, &p("amd64", None))
                .unwrap()
                .digest
                .to_string(),
            D1
        );
        assert_eq!(
            select_platform(&i, &p("arm64", Some("v8")))
                .unwrap()
                .digest
                .to_string(),
            D2
        );
        assert_eq!(
            select_platform(&i, &p("arm", Some("v7")))
                .unwrap()
                .digest
                .to_string(),
            D1,
            "another variant when the exact one is missing"
        );
        assert!(select_platform(&i, &p("s390x", None)).is_none());
        assert_eq!(host_platform().os, "linux");
    }
}
