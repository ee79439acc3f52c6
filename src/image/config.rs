//! The image config (what `docker run` takes from an image: user, env,
//! working directory, entrypoint, cmd; and the layers' `diff_ids`), decoded
//! from untrusted bytes, and the run config the store hands to a run.

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::{ImageError, Result};

/// The fields of an image config the store uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

/// `config` of an image config (Docker's capitalised names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// Decodes an image config under a size cap and checks it: `rootfs.type`
/// is `layers`, strings hold no NUL, `Env` entries are `KEY=VALUE` with a
/// non-empty key, `WorkingDir` is absolute.
pub fn decode_config(bytes: &[u8], max: u64, what: &str) -> Result<ImageConfig> {
    if bytes.len() as u64 > max {
        return Err(ImageError::TooLarge {
            what: what.to_string(),
            limit: max,
            unit: "bytes",
        });
    }
    let c: ImageConfig =
        serde_json::from_slice(bytes).map_err(|e| ImageError::invalid(what, e.to_string()))?;
    let bad = |field: &str, reason: &str| ImageError::invalid(what, format!("{field}: {reason}"));
    if c.rootfs.kind != "layers" {
        return Err(bad("rootfs.type", "must be \"layers\""));
    }
    if let Some(cc) = &c.config {
        let nul = |s: &String| s.contains('\0');
        if cc.user.as_ref().is_some_and(nul) {
            return Err(bad("config.User", "NUL byte"));
        }
        for (field, list) in [
            ("config.Env", &cc.env),
            ("config.Entrypoint", &cc.entrypoint),
            ("config.Cmd", &cc.cmd),
        ] {
            if list.iter().flatten().any(nul) {
                return Err(bad(field, "NUL byte"));
            }
        }
        for e in cc.env.iter().flatten() {
            if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                return Err(bad("config.Env", &format!("{e:?} is not KEY=VALUE")));
            }
        }
        if let Some(w) = cc.working_dir.as_deref()
            && !w.is_empty()
            && (!w.starts_with('/') || w.contains('\0'))
        {
            return Err(bad(
                "config.WorkingDir",
                &format!("{w:?} is not an absolute path"),
            ));
        }
    }
    Ok(c)
}

/// What a run of the image takes from it: who it runs as, its
/// environment, where it starts and what it runs when no command is given
/// (`entrypoint` followed by `cmd`, as `docker run` does).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    /// `User` as written in the image (empty: none, so uid 0).
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the image's `/etc/group` entries that list
    /// the user by name (as Docker adds them).
    pub additional_gids: Vec<u32>,
    /// `KEY=VALUE` entries, in the image's order.
    pub env: Vec<String>,
    /// Absolute; `/` when the image sets none.
    pub working_dir: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl RunConfig {
    /// The run config of `c` with the user not yet resolved (uid 0).
    pub fn unresolved(c: &ImageConfig) -> RunConfig {
        let cc = c.config.clone().unwrap_or_default();
        RunConfig {
            user: cc.user.unwrap_or_default(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            env: cc.env.unwrap_or_default(),
            working_dir: cc
                .working_dir
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            entrypoint: cc.entrypoint.unwrap_or_default(),
            cmd: cc.cmd.unwrap_or_default(),
        }
    }

    /// The command a run executes when none is given: entrypoint then cmd.
    pub fn default_command(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn decodes_and_checks() {
        let ok = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"User":"app","Env":["PATH=/bin","A="],"Cmd":["sh"],"WorkingDir":"/w"}},"rootfs":{{"type":"layers","diff_ids":["{D}"]}}}}"#
        );
        let c = decode_config(ok.as_bytes(), 1 << 20, "config").unwrap();
        let r = RunConfig::unresolved(&c);
        assert_eq!(r.user, "app");
        assert_eq!(r.env, ["PATH=/bin", "A="]);
        assert_eq!(r.working_dir, "/w");
        assert_eq!(r.default_command(), ["sh"]);
        let minimal = r#"{"config":null,"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let r = RunConfig::unresolved(&decode_config(minimal.as_bytes(), 1 << 20, "c").unwrap());
        assert_eq!((r.uid, r.working_dir.as_str(), r.cmd.len()), (0, "/", 0));
        for (bad, want) in [
            (ok.replace("layers", "nope"), "rootfs.type"),
            (ok.replace("A=", "=A"), "KEY=VALUE"),
            (ok.replace("/w", "w"), "WorkingDir"),
            (ok.replace("\"sh\"", "\"s\\u0000h\""), "NUL"),
            (ok.replace(D, "sha256:x"), "digest"),
        ] {
            let e = decode_config(bad.as_bytes(), 1 << 20, "config").unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        assert!(decode_config(ok.as_bytes(), 10, "config").is_err());
    }
}
