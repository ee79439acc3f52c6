//! The network half of a pull (the `registry` feature): `oci-client` for
//! the token dance and the blob streams, `reqwest` (the client oci-client
//! is built on, configured the same way) for the manifests, fetched under
//! the manifest cap with their exact bytes and Content-Type. The requests
//! run on a current-thread tokio runtime owned by the pulling thread; the
//! store's synchronous ingest reads each layer's stream through
//! [`StreamReader`], which drives the runtime as it reads.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use super::creds::{self, Credentials};
use super::transport::{self, Scheme};
use super::{PullError, PullEvent, PullOptions, Pulled};
use crate::image::digest::Digest;
use crate::image::error::{ImageError, one_line};
use crate::image::ingest::Ingest;
use crate::image::layer::{BlobSpec, LayerSource};
use crate::image::manifest::{
    DOCKER_LIST, DOCKER_MANIFEST, Document, OCI_INDEX, OCI_MANIFEST, select_platform,
};
use crate::image::reference::Reference;
use crate::image::store::Store;

/// Nested indexes followed at most (as import).
const MAX_INDEX_DEPTH: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// No byte for this long on a response: the pull fails.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// An error answer's body read at most (for its message).
const MAX_ERROR_BODY: usize = 16 << 10;
const USER_AGENT: &str = concat!("sandbox/", env!("CARGO_PKG_VERSION"));
const ACCEPT: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// A manifest as fetched: its exact bytes, Content-Type and
/// Docker-Content-Digest.
type Fetched = (Vec<u8>, Option<String>, Option<String>);

/// One pull's connection to one repository.
struct Session {
    rt: tokio::runtime::Runtime,
    client: Client,
    http: reqwest::Client,
    oref: oci_client::Reference,
    registry: String,
    repository: String,
    /// `scheme://host[:port]` as requests go out.
    base: String,
    /// The Authorization header for our own requests (manifests).
    authorization: Option<String>,
    /// Which credentials were used, for a 401's message.
    creds_said: String,
    requests: u32,
    bytes: u64,
}

pub(super) fn pull(
    store: &Store,
    reference: &str,
    opts: &PullOptions,
) -> Result<Pulled, PullError> {
    let (asked, rest) = transport::split_scheme(reference);
    let r = Reference::parse(rest).map_err(|e| PullError::Reference(Box::new(e)))?;
    let scheme = transport::choose(r.domain(), asked, &opts.insecure_registries)?;
    let mut s = Session::new(&r, scheme, opts)?;
    s.fetch(store, &r, opts)
}

/// Credentials for `registry` from the file the options name (or the
/// default one, when it exists), and a phrase saying where they came from.
fn credentials(
    registry: &str,
    opts: &PullOptions,
) -> Result<(Option<Credentials>, String), PullError> {
    let (path, explicit): (Option<PathBuf>, bool) = match &opts.credentials {
        Some(p) => (Some(p.clone()), true),
        None => (creds::default_path().filter(|p| p.exists()), false),
    };
    let Some(path) = path else {
        return Ok((
            None,
            "no credentials were sent (no credentials file: give --creds FILE)".into(),
        ));
    };
    let bad = |reason: String| PullError::Credentials {
        path: path.clone(),
        reason,
    };
    let cfg = creds::load(&path).map_err(bad)?;
    let found = cfg.lookup(registry).map_err(bad)?;
    let said = match &found {
        Some(Credentials::Basic { username, .. }) => format!(
            "credentials of user {username:?} for {registry} from {}",
            path.display()
        ),
        Some(Credentials::Bearer(_)) => {
            format!("a token for {registry} from {}", path.display())
        }
        None => format!(
            "no credentials were sent ({} has none for {registry}{})",
            path.display(),
            if explicit { "" } else { "; give --creds FILE" }
        ),
    };
    Ok((found, said))
}

/// The CA file's certificates (PEM; one or several).
fn ca_certs(
    opts: &PullOptions,
) -> Result<(Vec<Certificate>, Vec<reqwest::Certificate>), PullError> {
    let Some(path) = &opts.ca_file else {
        return Ok((Vec::new(), Vec::new()));
    };
    let bad = |reason: String| PullError::CaFile {
        path: path.clone(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.len() > creds::MAX_CREDS_FILE {
        return Err(bad("larger than 1 MiB".into()));
    }
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let ours = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    // oci-client takes one certificate per entry.
    let text = String::from_utf8_lossy(&pem);
    let mut theirs = Vec::new();
    const END: &str = "-----END CERTIFICATE-----";
    let mut rest = text.as_ref();
    while let Some(b) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(e) = rest[b..].find(END) else { break };
        theirs.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data: rest.as_bytes()[b..b + e + END.len()].to_vec(),
        });
        rest = &rest[b + e + END.len()..];
    }
    if theirs.is_empty() || ours.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok((theirs, ours))
}

/// A reqwest or oci-client error's whole chain on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = c.source();
    }
    one_line(&parts.join(": "))
}

/// Whether a rustls error is somewhere in the chain (a TLS failure).
fn tls_reason(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        // An io::Error does not give its payload as its source (and the
        // payload may be another io::Error).
        let mut inner: &(dyn std::error::Error + 'static) = c;
        while let Some(p) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = p;
        }
        let t = inner.downcast_ref::<rustls::Error>();
        if let Some(t) = t {
            let hint = match t {
                rustls::Error::InvalidMessage(_) => {
                    " (the registry does not speak TLS? plain HTTP: http://, where allowed)"
                }
                rustls::Error::InvalidCertificate(_) => " (trust its CA with --ca FILE)",
                _ => "",
            };
            return Some(one_line(&format!("{t}{hint}")));
        }
        cur = c.source();
    }
    None
}

impl Session {
    fn new(r: &Reference, scheme: Scheme, opts: &PullOptions) -> Result<Session, PullError> {
        // reqwest takes the process's rustls provider: ring (see Cargo.toml).
        // Deprecated in rustls 0.23.48 only to steer towards aws-lc-rs's
        // post-quantum key exchange; ring's provider is complete otherwise.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (found, creds_said) = credentials(r.domain(), opts)?;
        let (ca_oci, ca_reqwest) = ca_certs(opts)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PullError::Internal(format!("tokio runtime: {e}")))?;
        let oref = match r.digest() {
            Some(d) => oci_client::Reference::with_digest(
                r.domain().into(),
                r.path().into(),
                d.to_string(),
            ),
            None => oci_client::Reference::with_tag(
                r.domain().into(),
                r.path().into(),
                r.tag().unwrap_or("latest").into(),
            ),
        };
        let config = ClientConfig {
            protocol: match scheme {
                Scheme::Http => ClientProtocol::Http,
                Scheme::Https => ClientProtocol::Https,
            },
            extra_root_certificates: ca_oci,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let registry = r.domain().to_string();
        let repository = r.path().to_string();
        let internal = |e: &dyn std::error::Error| PullError::Internal(format!("HTTP client: {e}"));
        let client = Client::try_from(config).map_err(|e| internal(&e))?;
        let http = reqwest::Client::builder()
            .tls_certs_merge(ca_reqwest)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| internal(&e))?;
        let base = format!("{}://{}", scheme.as_str(), oref.resolve_registry());
        let auth = match &found {
            None => RegistryAuth::Anonymous,
            Some(Credentials::Basic { username, password }) => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Some(Credentials::Bearer(t)) => RegistryAuth::Bearer(t.clone()),
        };
        let mut s = Session {
            rt,
            client,
            http,
            oref,
            registry,
            repository,
            base,
            authorization: None,
            creds_said,
            requests: 0,
            bytes: 0,
        };
        // The token dance (anonymous bearer tokens too), or basic auth.
        let token =
            s.rt.block_on(s.client.auth(&s.oref, &auth, RegistryOperation::Pull))
                .map_err(|e| s.oci_error(e, "authentication", None))?;
        s.authorization = match (token, &auth) {
            (Some(t), _) => Some(format!("Bearer {t}")),
            (None, RegistryAuth::Basic(u, p)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
            (None, _) => None,
        };
        tracing::debug!(registry = %s.registry, scheme = scheme.as_str(), "registry session");
        Ok(s)
    }

    fn unauthorized(&self) -> PullError {
        PullError::Unauthorized {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            creds: self.creds_said.clone(),
        }
    }

    /// A transport error (connect, TLS, timeout) as a [`PullError`].
    fn transport_error(&self, e: &(dyn std::error::Error + 'static), what: &str) -> PullError {
        tracing::debug!(error = ?e, what, "transport error");
        if let Some(reason) = tls_reason(e) {
            return PullError::Tls {
                registry: self.registry.clone(),
                reason,
            };
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>()
            && (r.is_connect() || r.is_timeout())
        {
            return PullError::Unreachable {
                registry: self.registry.clone(),
                reason: chain(e),
            };
        }
        PullError::Registry {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            what: what.into(),
            reason: chain(e),
        }
    }

    fn oci_error(&self, e: OciDistributionError, what: &str, blob: Option<&Digest>) -> PullError {
        let registry = || self.registry.clone();
        let repository = || self.repository.clone();
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => self.unauthorized(),
            OciDistributionError::RequestError(r) => self.transport_error(&r, what),
            OciDistributionError::RegistryError { envelope, .. } => {
                let code = envelope.errors.first().map(|e| &e.code);
                match (code, blob) {
                    (Some(OciErrorCode::BlobUnknown), Some(d)) => PullError::BlobUnknown {
                        registry: registry(),
                        repository: repository(),
                        digest: d.clone(),
                    },
                    (Some(OciErrorCode::Unauthorized), _) => self.unauthorized(),
                    (Some(OciErrorCode::Denied), _) => PullError::Denied {
                        registry: registry(),
                        repository: repository(),
                        creds: self.creds_said.clone(),
                    },
                    _ => PullError::Registry {
                        registry: registry(),
                        repository: repository(),
                        what: what.into(),
                        reason: one_line(&envelope.to_string()),
                    },
                }
            }
            OciDistributionError::ServerError { code, message, .. } => match (code, blob) {
                (404, Some(d)) => PullError::BlobUnknown {
                    registry: registry(),
                    repository: repository(),
                    digest: d.clone(),
                },
                (401, _) => self.unauthorized(),
                _ => PullError::Registry {
                    registry: registry(),
                    repository: repository(),
                    what: what.into(),
                    reason: format!("HTTP {code}: {}", short(&message)),
                },
            },
            other => PullError::Registry {
                registry: registry(),
                repository: repository(),
                what: what.into(),
                reason: chain(&other),
            },
        }
    }

    fn image_error(&self, source: ImageError) -> PullError {
        PullError::Image {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            source: Box::new(source),
        }
    }

    /// GETs a manifest or index by tag or digest, under `max` bytes:
    /// its exact bytes, Content-Type and Docker-Content-Digest.
    fn get_manifest(&mut self, reference: &str, max: u64) -> Result<Fetched, PullError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let what = format!("manifest {reference}");
        self.requests += 1;
        let mut req = self.http.get(&url).header("Accept", ACCEPT.join(", "));
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let mut resp = self
            .rt
            .block_on(async { req.send().await })
            .map_err(|e| self.transport_error(&e, &what))?;
        let status = resp.status();
        if !status.is_success() {
            let body = self
                .rt
                .block_on(read_capped(&mut resp, MAX_ERROR_BODY as u64));
            let body = body.map(|(b, _)| b).unwrap_or_default();
            return Err(match status.as_u16() {
                401 => self.unauthorized(),
                403 => PullError::Denied {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    creds: self.creds_said.clone(),
                },
                404 => PullError::ManifestUnknown {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    reference: reference.to_string(),
                },
                c => PullError::Registry {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    what,
                    reason: format!("HTTP {c}: {}", short(&String::from_utf8_lossy(&body))),
                },
            });
        }
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type");
        let docker_digest = header("docker-content-digest");
        let too_large = |s: &Self| {
            s.image_error(ImageError::TooLarge {
                what: what.clone(),
                limit: max,
                unit: "bytes",
            })
        };
        if resp.content_length().is_some_and(|n| n > max) {
            return Err(too_large(self));
        }
        let (body, over) = self
            .rt
            .block_on(read_capped(&mut resp, max))
            .map_err(|e| self.transport_error(&e, &what))?;
        self.bytes += body.len() as u64;
        if over {
            return Err(too_large(self));
        }
        Ok((body, content_type, docker_digest))
    }

    /// Opens a blob's stream (oci-client: authenticated, redirects followed).
    fn open_blob(
        &mut self,
        d: &Digest,
    ) -> Result<BoxStream<'static, std::io::Result<bytes::Bytes>>, PullError> {
        self.requests += 1;
        let digest = d.to_string();
        let s = self
            .rt
            .block_on(self.client.pull_blob_stream(&self.oref, digest.as_str()))
            .map_err(|e| self.oci_error(e, &format!("blob {d}"), Some(d)))?;
        Ok(s.stream)
    }

    /// A whole small blob (a config), under `max` bytes.
    fn get_blob(&mut self, d: &Digest, max: u64) -> Result<Vec<u8>, PullError> {
        let stream = self.open_blob(d)?;
        let mut r = StreamReader::new(&self.rt, stream);
        let mut out = Vec::new();
        let n = (&mut r)
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| self.transport_error(&e, &format!("blob {d}")))?;
        self.bytes += n as u64;
        if n as u64 > max {
            return Err(self.image_error(ImageError::TooLarge {
                what: format!("config {d}"),
                limit: max,
                unit: "bytes",
            }));
        }
        Ok(out)
    }

    /// Stores the manifest the reference names, following indexes to the
    /// platform's entry. Returns the image manifest's digest, the manifest,
    /// and the index the reference named.
    fn manifest(
        &mut self,
        ing: &mut Ingest<'_>,
        r: &Reference,
        platform: &crate::image::Platform,
    ) -> Result<(Digest, crate::image::Manifest, Option<Digest>), PullError> {
        let max = ing.store().limits().manifest_bytes;
        let mut want: String = match (r.digest(), r.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".into(),
        };
        let mut expected = r.digest().cloned();
        let mut announced_by_parent: Option<String> = None;
        let mut index = None;
        for depth in 0..=MAX_INDEX_DEPTH {
            let (bytes, ct, header) = self.get_manifest(&want, max)?;
            let media_type = announced_by_parent.take().or(ct);
            let (digest, doc) = ing
                .put_manifest(&bytes, expected.as_ref(), media_type.as_deref())
                .map_err(|e| self.image_error(e))?;
            if let Some(h) = header.as_deref()
                && h != digest.to_string()
                && h.starts_with("sha256:")
            {
                // The registry says the content is another one: hostile or broken.
                return Err(self.image_error(ImageError::DigestMismatch {
                    what: format!("manifest {want} (Docker-Content-Digest)"),
                    expected: Digest::parse(h).map_err(|e| self.image_error(e))?,
                    actual: digest,
                }));
            }
            match doc {
                Document::Manifest(m) => return Ok((digest, m, index)),
                Document::Index(i) => {
                    if depth == MAX_INDEX_DEPTH {
                        break;
                    }
                    let next = select_platform(&i, platform).ok_or_else(|| {
                        self.image_error(ImageError::Platform {
                            what: format!("index {digest}"),
                            platform: platform.to_string(),
                        })
                    })?;
                    tracing::debug!(index = %digest, manifest = %next.digest, %platform, "index resolved");
                    index.get_or_insert(digest);
                    want = next.digest.to_string();
                    expected = Some(next.digest.clone());
                    announced_by_parent = Some(next.media_type.clone()).filter(|m| !m.is_empty());
                }
            }
        }
        Err(self.image_error(ImageError::invalid(
            format!("manifest {}", r),
            "indexes nested too deep",
        )))
    }

    fn fetch(
        &mut self,
        store: &Store,
        r: &Reference,
        opts: &PullOptions,
    ) -> Result<Pulled, PullError> {
        let limits = store.limits().clone();
        let platform = opts
            .platform
            .clone()
            .unwrap_or_else(|| store.platform().clone());
        let event = |e: PullEvent<'_>| {
            if let Some(p) = &opts.progress {
                p(&e);
            }
        };
        let mut ing = store.ingest();
        let (digest, m, index) = self.manifest(&mut ing, r, &platform)?;
        let blobs: Vec<(Digest, u64)> = m
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.size))
            .collect();
        event(PullEvent::Manifest {
            digest: &digest,
            layers: &blobs,
        });
        let mut blobs_fetched = Vec::new();
        let cfg_digest = &m.config.digest;
        let present = ing.has_blob(cfg_digest).map_err(|e| self.image_error(e))?;
        let cfg_bytes = if present {
            store
                .read_blob(cfg_digest, limits.config_bytes)
                .map_err(|e| self.image_error(e))?
        } else {
            if m.config.size > limits.config_bytes {
                return Err(self.image_error(ImageError::TooLarge {
                    what: format!("config {cfg_digest} (its announced size)"),
                    limit: limits.config_bytes,
                    unit: "bytes",
                }));
            }
            blobs_fetched.push(cfg_digest.clone());
            self.get_blob(cfg_digest, m.config.size)?
        };
        let cfg = ing
            .put_config(&cfg_bytes, cfg_digest)
            .map_err(|e| self.image_error(e))?;
        crate::image::import::check_layers(&m, cfg.rootfs.diff_ids.len(), &digest)
            .map_err(|e| self.image_error(e))?;
        let (mut fetched, mut present) = (0, 0);
        for (i, (desc, diff_id)) in m.layers.iter().zip(&cfg.rootfs.diff_ids).enumerate() {
            if ing.has_layer(diff_id).map_err(|e| self.image_error(e))? {
                present += 1;
                event(PullEvent::LayerPresent {
                    index: i,
                    blob: &desc.digest,
                });
                continue;
            }
            if desc.size > limits.blob_bytes {
                return Err(self.image_error(ImageError::TooLarge {
                    what: format!("layer blob {} (its announced size)", desc.digest),
                    limit: limits.blob_bytes,
                    unit: "bytes",
                }));
            }
            event(PullEvent::LayerStart {
                index: i,
                blob: &desc.digest,
                size: desc.size,
            });
            blobs_fetched.push(desc.digest.clone());
            let stream = self.open_blob(&desc.digest)?;
            let mut reader = StreamReader::new(&self.rt, stream);
            if let Some(p) = &opts.progress {
                reader.progress = Some((i, p.clone()));
            }
            let src = LayerSource {
                diff_id: diff_id.clone(),
                blob: Some(BlobSpec {
                    digest: desc.digest.clone(),
                    size: desc.size,
                    media_type: desc.media_type.clone(),
                }),
            };
            let got = ing.unpack_layer(&mut reader, &src);
            let n = reader.done;
            let transport = reader.error.take();
            drop(reader);
            self.bytes += n;
            if let Err(e) = got {
                // A broken connection is told as such, not as a short layer.
                if let Some(t) = transport {
                    return Err(self.transport_error(&t, &format!("layer blob {}", desc.digest)));
                }
                return Err(self.image_error(e));
            }
            if n == 0 {
                // Another pull unpacked it while this one waited.
                present += 1;
            } else {
                fetched += 1;
            }
            event(PullEvent::LayerDone {
                index: i,
                fetched: n,
            });
        }
        let names: Vec<Reference> = vec![r.clone()];
        let rec = ing
            .commit(&names, &digest, index.as_ref())
            .map_err(|e| self.image_error(e))?;
        tracing::info!(
            image = %r, digest = %digest, fetched, present, bytes = self.bytes,
            requests = self.requests, "image pulled"
        );
        Ok(Pulled {
            reference: r.to_string(),
            name: r.store_name(),
            digest,
            index,
            platform: rec.platform,
            layers: m.layers.len(),
            layers_fetched: fetched,
            layers_present: present,
            bytes_fetched: self.bytes,
            requests: self.requests,
            blobs_fetched,
        })
    }
}

/// An error body or message shortened to one line.
fn short(s: &str) -> String {
    let s = one_line(s.trim());
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// Reads a response body up to `max` bytes; `true` when there was more.
async fn read_capped(
    resp: &mut reqwest::Response,
    max: u64,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if (out.len() + chunk.len()) as u64 > max {
            let room = (max as usize).saturating_sub(out.len());
            out.extend_from_slice(&chunk[..room.min(chunk.len())]);
            return Ok((out, true));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, false))
}

/// A blob's byte stream as a [`Read`], driving the runtime as it reads.
/// oci-client's own digest check at the end of the stream is left to the
/// store (which checks the same digest and says which blob): its error
/// reads as the end of the stream. A transport error is kept, so that it
/// is reported as one.
struct StreamReader<'r> {
    rt: &'r tokio::runtime::Runtime,
    stream: BoxStream<'static, std::io::Result<bytes::Bytes>>,
    buf: bytes::Bytes,
    done: u64,
    error: Option<std::io::Error>,
    progress: Option<(usize, super::ProgressFn)>,
}

impl<'r> StreamReader<'r> {
    fn new(
        rt: &'r tokio::runtime::Runtime,
        stream: BoxStream<'static, std::io::Result<bytes::Bytes>>,
    ) -> Self {
        StreamReader {
            rt,
            stream,
            buf: bytes::Bytes::new(),
            done: 0,
            error: None,
            progress: None,
        }
    }
}

impl Read for StreamReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => {
                    self.done += b.len() as u64;
                    if let Some((i, p)) = &self.progress {
                        p(&PullEvent::LayerBytes {
                            index: *i,
                            done: self.done,
                        });
                    }
                    self.buf = b;
                }
                Some(Err(e))
                    if e.get_ref()
                        .is_some_and(|i| i.is::<oci_client::errors::DigestError>()) =>
                {
                    return Ok(0);
                }
                Some(Err(e)) => {
                    let copy = std::io::Error::new(e.kind(), chain(&e));
                    self.error = Some(e);
                    return Err(copy);
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}
