//! The checkout a run works in (`process.run_as_checkout_owner`): the
//! writable bind that holds the run's working directory, whose owner the
//! program acts as (podman's `--userns=keep-id`), and the directories that
//! may never be a read-write checkout (`/`, a home directory, anything
//! holding one).
//!
//! Only decisions live here (which bind, whose ids, too wide or not); the
//! runner applies them when it writes the run's id maps.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::profile::HostIds;

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// A writable bind that would hand the run a whole home, or the host's
    /// root directory.
    #[error(
        "{bind}: {path} is {what}; a run may not get it read-write (bind the project's own directory, e.g. `cd ~/project` first or `--bind ~/project:/src`)"
    )]
    TooWide {
        /// How the bind is named ("bind . on /workspace", "--bind /:/src").
        bind: String,
        path: PathBuf,
        what: String,
    },
    #[error("{bind}: reading the owner of {path}: {source}")]
    Stat {
        bind: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Host ids a run's program acts as instead of the job's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    /// `None`: the job's gid (the checkout's group is root's, nobody's or
    /// a job's).
    pub gid: Option<u32>,
}

/// The index of the bind (by its destination, in mount order) under which
/// `cwd` lies: the deepest destination that is `cwd` or one of its
/// ancestors; of equal ones the last (mounted over the others).
pub fn covering<'a>(dests: impl IntoIterator<Item = &'a Path>, cwd: &Path) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, d) in dests.into_iter().enumerate() {
        if cwd.starts_with(d) {
            let depth = d.components().count();
            if best.is_none_or(|(_, bd)| depth >= bd) {
                best = Some((i, depth));
            }
        }
    }
    best.map(|(i, _)| i)
}

/// Whether a host id may be what a run acts as: a regular user, so not
/// root (0), not the overflow id nobody (65534), and not an id the sandbox
/// hands to jobs (the profile's range or its fixed id: another job may be
/// running as it).
pub fn regular(id: u32, ranges: &HostIds) -> bool {
    if id == 0 || id == 65534 {
        return false;
    }
    let own = match *ranges {
        HostIds::Fixed { uid, gid } => id == uid || id == gid,
        HostIds::Range {
            first, count, ids, ..
        } => (u64::from(first)..u64::from(first) + u64::from(count) * u64::from(ids))
            .contains(&u64::from(id)),
    };
    !own && !HostIds::default_span().contains(&u64::from(id))
}

/// The ids a run in a checkout whose root has `uid`/`gid` acts as: the
/// owner's uid when it is a regular user (`None` otherwise: the job's
/// ids, as without the key), with the directory's group when that is
/// regular too, else the job's gid.
pub fn owner_of(uid: u32, gid: u32, ranges: &HostIds) -> Option<Owner> {
    regular(uid, ranges).then(|| Owner {
        uid,
        gid: regular(gid, ranges).then_some(gid),
    })
}

/// Home directories of the host: `/root`, `/home`, and every user's in
/// `passwd` (the text of `/etc/passwd`), as written.
pub fn homes(passwd: &str) -> Vec<(String, PathBuf)> {
    let mut v = vec![
        ("root".to_string(), PathBuf::from("/root")),
        ("the users".to_string(), PathBuf::from("/home")),
    ];
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 7 && f[5].starts_with('/') {
            v.push((f[0].to_string(), PathBuf::from(f[5])));
        }
    }
    v
}

/// Why `path` (canonical) may not be a read-write bind: it is `/`, a home
/// directory of `homes`, or holds one. `None`: it may.
pub fn too_wide(path: &Path, homes: &[(String, PathBuf)]) -> Option<String> {
    if path.components().all(|c| c == Component::RootDir) {
        return Some("the host's root directory".into());
    }
    for (user, h) in homes {
        // As the kernel sees it (a home may be a symlink).
        let h = std::fs::canonicalize(h).unwrap_or_else(|_| h.clone());
        if h == path {
            return Some(if path == Path::new("/home") {
                "the directory of the users' home directories".into()
            } else {
                format!("the home directory of {user}")
            });
        }
        if h.starts_with(path) {
            return Some(format!(
                "a directory holding the home directory of {user} ({})",
                h.display()
            ));
        }
    }
    None
}

/// [`too_wide`] against this host's home directories (`/etc/passwd`).
pub fn check_not_too_wide(bind: &str, path: &Path) -> Result<(), CheckoutError> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    match too_wide(path, &homes(&passwd)) {
        Some(what) => Err(CheckoutError::TooWide {
            bind: bind.to_string(),
            path: path.to_path_buf(),
            what,
        }),
        None => Ok(()),
    }
}

/// The same check for a bind known only by its open tree (a bind the
/// caller opened, e.g. a helper's client): refused when it is the very
/// directory `/` or a home directory is (compared by device and inode).
pub fn check_fd_not_too_wide(bind: &str, meta: &std::fs::Metadata) -> Result<(), CheckoutError> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut all = vec![("/".to_string(), PathBuf::from("/"))];
    all.extend(homes(&passwd));
    for (user, h) in all {
        if let Ok(m) = std::fs::metadata(&h)
            && (m.dev(), m.ino()) == (meta.dev(), meta.ino())
        {
            return Err(CheckoutError::TooWide {
                bind: bind.to_string(),
                path: h.clone(),
                what: if user == "/" {
                    "the host's root directory".into()
                } else {
                    format!("the home directory of {user}")
                },
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_picks_the_deepest_then_the_last() {
        let d = [
            Path::new("/workspace"),
            Path::new("/src"),
            Path::new("/src/vendor"),
            Path::new("/src"),
        ];
        assert_eq!(covering(d, Path::new("/src")), Some(3));
        assert_eq!(covering(d, Path::new("/src/a/b")), Some(3));
        assert_eq!(covering(d, Path::new("/src/vendor/x")), Some(2));
        assert_eq!(covering(d, Path::new("/workspace")), Some(0));
        assert_eq!(covering(d, Path::new("/srcx")), None);
        assert_eq!(covering(d, Path::new("/tmp")), None);
    }

    #[test]
    fn only_regular_users_are_acted_as() {
        let r = HostIds::default_range();
        assert!(regular(1000, &r));
        assert!(regular(0x6E00_1234, &r));
        for id in [0, 65534, 0x7000_0000, 0x7000_0001, 0x70FF_FFFF] {
            assert!(!regular(id, &r), "{id:#x}");
        }
        // A profile's own fixed id (runs share it) and the default span
        // (other profiles' jobs) are never taken either.
        let f = HostIds::Fixed {
            uid: 5000,
            gid: 5001,
        };
        assert!(!regular(5000, &f) && !regular(5001, &f) && !regular(0x7000_0000, &f));
        assert!(regular(1000, &f));
        assert_eq!(
            owner_of(1000, 1000, &r),
            Some(Owner {
                uid: 1000,
                gid: Some(1000)
            })
        );
        // A regular owner in root's group: the group is the job's.
        assert_eq!(
            owner_of(1000, 0, &r),
            Some(Owner {
                uid: 1000,
                gid: None
            })
        );
        assert_eq!(owner_of(0, 1000, &r), None);
    }

    #[test]
    fn root_homes_and_what_holds_them_are_too_wide() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      alice:x:1000:1000:Alice:/srv/users/alice:/bin/sh\n\
                      nologin:x:999:999::nonsense:/bin/false\n";
        let h = homes(passwd);
        let w = |p: &str| too_wide(Path::new(p), &h);
        assert_eq!(w("/").as_deref(), Some("the host's root directory"));
        assert_eq!(w("/root").as_deref(), Some("the home directory of root"));
        assert_eq!(
            w("/srv/users/alice").as_deref(),
            Some("the home directory of alice")
        );
        assert!(
            w("/srv/users")
                .unwrap()
                .contains("holding the home directory of alice")
        );
        assert!(w("/home").is_some());
        // A project inside a home, or anywhere else, is fine.
        for ok in [
            "/srv/users/alice/project",
            "/tmp/build",
            "/home/bob/src/x",
            "/work",
        ] {
            assert_eq!(w(ok), None, "{ok}");
        }
    }
}
