//! An image's `User` resolved to numeric ids, as Docker does it: `name`,
//! `name:group`, `uid`, `uid:gid` (and mixes), names looked up in the
//! image's own `/etc/passwd` and `/etc/group`, read from its layers top
//! down as the overlay would show them (whiteouts and opaque directories
//! honoured; a symlinked `/etc` or file is not followed: no such file).

use std::io::Read;
use std::path::PathBuf;

use super::beneath::{self as fs, b};
use super::limits::MAX_ACCOUNT_FILE;

/// The largest id Docker accepts.
const MAX_ID: u64 = (1 << 31) - 1;

/// Resolved ids.
#[derive(Debug, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Resolves `user` against the layers (rootfs directories, lowest first).
/// The error is the reason, for [`super::ImageError::User`].
pub fn resolve_user(user: &str, layers: &[PathBuf]) -> Result<Ids, String> {
    if user.is_empty() {
        return Ok(Ids {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
        });
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if u.is_empty() || g.is_some_and(str::is_empty) {
        return Err("expected USER[:GROUP]".into());
    }
    let passwd = read_merged(layers, b"etc/passwd")?;
    let entry = |pred: &dyn Fn(&[&str]) -> bool| {
        passwd.as_deref().and_then(|p| {
            p.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 4 && pred(f))
                .map(|f| {
                    (
                        f[0].to_string(),
                        f[2].parse::<u64>().ok(),
                        f[3].parse::<u64>().ok(),
                    )
                })
        })
    };
    let (uid, name, pw_gid) = match numeric(u)? {
        Some(uid) => match entry(&|f| f[2].parse::<u64>().ok() == Some(uid)) {
            Some((name, _, g)) => (uid, Some(name), g),
            None => (uid, None, None),
        },
        None => match entry(&|f| f[0] == u) {
            Some((name, Some(uid), g)) if uid <= MAX_ID => (uid, Some(name), g),
            Some(_) => return Err(format!("{u:?} has a bad uid in /etc/passwd")),
            None => return Err(format!("no user {u:?} in the image's /etc/passwd")),
        },
    };
    let groups = read_merged(layers, b"etc/group")?;
    let group_lines = || {
        groups
            .as_deref()
            .unwrap_or("")
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() >= 3)
            .collect::<Vec<_>>()
    };
    let gid = match g {
        None => pw_gid.filter(|g| *g <= MAX_ID).unwrap_or(0),
        Some(g) => match numeric(g)? {
            Some(gid) => gid,
            None => group_lines()
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse::<u64>().ok())
                .filter(|g| *g <= MAX_ID)
                .ok_or_else(|| format!("no group {g:?} in the image's /etc/group"))?,
        },
    };
    let mut additional_gids: Vec<u32> = Vec::new();
    if let Some(name) = &name {
        for f in group_lines() {
            let member = f.get(3).is_some_and(|m| m.split(',').any(|m| m == name));
            if let Some(id) = f[2]
                .parse::<u64>()
                .ok()
                .filter(|i| *i <= MAX_ID && *i != gid)
                && member
                && !additional_gids.contains(&(id as u32))
            {
                additional_gids.push(id as u32);
            }
        }
    }
    Ok(Ids {
        uid: uid as u32,
        gid: gid as u32,
        additional_gids,
    })
}

/// A numeric id, or `None` for a name.
fn numeric(s: &str) -> Result<Option<u64>, String> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match s.parse::<u64>() {
        Ok(v) if v <= MAX_ID => Ok(Some(v)),
        _ => Err(format!("id {s} out of range (0 to {MAX_ID})")),
    }
}

/// The file `rel` as the overlay of `layers` shows it, if it is a regular
/// file there.
pub fn read_merged(layers: &[PathBuf], rel: &[u8]) -> Result<Option<String>, String> {
    let comps: Vec<&[u8]> = rel.split(|&c| c == b'/').collect();
    let Some((&name, dirs)) = comps.split_last() else {
        return Ok(None);
    };
    'layers: for layer in layers.iter().rev() {
        let Ok(mut dir) = fs::open_root(layer) else {
            continue;
        };
        let mut opaque = false;
        for &c in dirs {
            match fs::kind_of(b(&dir), c) {
                Ok(None) if opaque => return Ok(None),
                Ok(None) => continue 'layers,
                Ok(Some((rustix::fs::FileType::Directory, _))) => {}
                // A whiteout, a file or a symlink hides every lower layer's.
                Ok(Some(_)) => return Ok(None),
                Err(e) => return Err(format!("{}: {e}", layer.display())),
            }
            dir = fs::open_dir(b(&dir), c).map_err(|e| format!("{}: {e}", layer.display()))?;
            opaque = fs::is_opaque(b(&dir));
        }
        return match fs::kind_of(b(&dir), name) {
            Ok(None) if opaque => Ok(None),
            Ok(None) => continue,
            Ok(Some((rustix::fs::FileType::RegularFile, _))) => {
                let f = fs::open_file(b(&dir), name).map_err(|e| e.to_string())?;
                let mut s = Vec::new();
                f.take(MAX_ACCOUNT_FILE + 1)
                    .read_to_end(&mut s)
                    .map_err(|e| e.to_string())?;
                if s.len() as u64 > MAX_ACCOUNT_FILE {
                    return Err(format!(
                        "/{} is larger than {MAX_ACCOUNT_FILE} bytes",
                        String::from_utf8_lossy(rel)
                    ));
                }
                Ok(Some(String::from_utf8_lossy(&s).into_owned()))
            }
            Ok(Some(_)) => Ok(None),
            Err(e) => Err(format!("{}: {e}", layer.display())),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        d
    }

    #[test]
    fn users_resolve_like_docker() {
        let base = layer(&[
            (
                "etc/passwd",
                "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
            ),
            (
                "etc/group",
                "root:x:0:\napp:x:1001:\nstaff:x:50:app,other\nwheel:x:10:root\n",
            ),
        ]);
        let layers = vec![base.path().to_path_buf()];
        let r = |u: &str| resolve_user(u, &layers);
        assert_eq!(
            r("").unwrap(),
            Ids {
                uid: 0,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            r("app").unwrap(),
            Ids {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![50]
            }
        );
        assert_eq!(
            r("1000").unwrap().gid,
            1001,
            "a known uid takes its passwd gid"
        );
        assert_eq!(
            r("4242").unwrap(),
            Ids {
                uid: 4242,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(r("app:staff").unwrap().gid, 50);
        assert_eq!(r("app:7").unwrap().gid, 7);
        assert_eq!(
            r("0:wheel").unwrap(),
            Ids {
                uid: 0,
                gid: 10,
                additional_gids: vec![]
            }
        );
        assert!(r("nobody").unwrap_err().contains("no user \"nobody\""));
        assert!(r("app:nogroup").unwrap_err().contains("no group"));
        assert!(r("99999999999").unwrap_err().contains("out of range"));
        assert!(r(":1").is_err());
        assert!(r("app:").is_err());
    }

    #[test]
    fn upper_layers_win_and_whiteouts_hide() {
        let base = layer(&[("etc/passwd", "app:x:1:1::/:/bin/sh\n")]);
        let upper = layer(&[("etc/passwd", "app:x:2:2::/:/bin/sh\n")]);
        let layers = vec![base.path().to_path_buf(), upper.path().to_path_buf()];
        assert_eq!(resolve_user("app", &layers).unwrap().uid, 2);
        // An upper layer whose /etc is a file hides the lower /etc/passwd.
        let hiding = layer(&[("etc", "not a directory")]);
        let layers = vec![base.path().to_path_buf(), hiding.path().to_path_buf()];
        assert!(resolve_user("app", &layers).is_err());
        // A layer without /etc says nothing.
        let empty = layer(&[("usr/x", "")]);
        let layers = vec![base.path().to_path_buf(), empty.path().to_path_buf()];
        assert_eq!(resolve_user("app", &layers).unwrap().uid, 1);
    }
}
