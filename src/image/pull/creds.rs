//! Registry credentials from a Docker `config.json`: `auths` keyed by
//! registry (`host[:port]`, or a URL such as `https://index.docker.io/v1/`),
//! each with `auth` (base64 of `user:password`), or `username` and
//! `password`, or `registrytoken` (a bearer token). Credential helpers
//! (`credsStore`, `credHelpers`) are not run: a registry served only by a
//! helper is pulled anonymously (said in the log). Decoded under a size cap;
//! no secret appears in an error or a log line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

/// The biggest credentials file read.
pub const MAX_CREDS_FILE: u64 = 1 << 20;

/// What to authenticate with.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username:?}, ***)"),
            Credentials::Bearer(_) => write!(f, "Bearer(***)"),
        }
    }
}

#[derive(Deserialize, Default)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// A decoded `config.json`.
#[derive(Deserialize, Default)]
pub struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json` (as
/// Docker looks); the caller checks that it exists.
pub fn default_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Reads and decodes the file at `path`.
pub fn load(path: &Path) -> Result<DockerConfig, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    f.take(MAX_CREDS_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_CREDS_FILE {
        return Err(format!("larger than {MAX_CREDS_FILE} bytes"));
    }
    parse(&bytes)
}

/// Decodes a `config.json`.
pub fn parse(bytes: &[u8]) -> Result<DockerConfig, String> {
    serde_json::from_slice(bytes).map_err(|e| crate::image::error::one_line(&e.to_string()))
}

/// The registry an `auths` key names: a URL's host (`https://h:5000/v1/`
/// is `h:5000`); Docker Hub's several names are `docker.io`.
fn key_registry(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

impl DockerConfig {
    /// The credentials for `registry` (`host[:port]`, as in a normalized
    /// reference: `docker.io` for Docker Hub), if the file has any.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credentials>, String> {
        let want = registry.to_ascii_lowercase();
        let Some((key, e)) = self.auths.iter().find(|(k, _)| key_registry(k) == want) else {
            if self.cred_helpers.contains_key(registry) || self.creds_store.is_some() {
                tracing::info!(
                    registry,
                    "credential helpers are not run: pulling without credentials"
                );
            }
            return Ok(None);
        };
        let bad = |reason: &str| format!("auths[{key:?}]: {reason}");
        if let Some(t) = e.registrytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials::Bearer(t.to_string())));
        }
        if let Some(a) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|_| bad("\"auth\" is not base64"))?;
            let s = String::from_utf8(raw).map_err(|_| bad("\"auth\" is not UTF-8"))?;
            let (u, p) = s
                .split_once(':')
                .ok_or_else(|| bad("\"auth\" is not user:password"))?;
            return Ok(Some(Credentials::Basic {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
        match (&e.username, &e.password) {
            (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credentials::Basic {
                username: u.clone(),
                password: p.clone(),
            })),
            _ => Err(bad(
                "no \"auth\", \"username\"/\"password\" or \"registrytoken\"",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let c = parse(
            br#"{"auths": {
                "127.0.0.1:5000": {"auth": "dXNlcjpwYTpzcw=="},
                "https://index.docker.io/v1/": {"username": "hub", "password": "x"},
                "tok.example": {"registrytoken": "T"},
                "bad.example": {"auth": "!!"},
                "empty.example": {}
            }, "credsStore": "desktop"}"#,
        )
        .unwrap();
        assert_eq!(
            c.lookup("127.0.0.1:5000").unwrap(),
            Some(Credentials::Basic {
                username: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert!(matches!(
            c.lookup("docker.io").unwrap(),
            Some(Credentials::Basic { username, .. }) if username == "hub"
        ));
        assert_eq!(
            c.lookup("tok.example").unwrap(),
            Some(Credentials::Bearer("T".into()))
        );
        assert_eq!(c.lookup("127.0.0.1:5001").unwrap(), None);
        let e = c.lookup("bad.example").unwrap_err();
        assert!(e.contains("base64") && !e.contains("!!"), "{e}");
        assert!(c.lookup("empty.example").is_err());
        assert!(parse(b"[").is_err());
        assert_eq!(
            format!(
                "{:?}",
                Credentials::Basic {
                    username: "u".into(),
                    password: "secret".into()
                }
            ),
            "Basic(\"u\", ***)"
        );
    }
}
