//! The prepared sandboxes of profiles: one pooled [`Sandbox`] per profile,
//! kept fresh, for long-lived processes (`sandbox helper`, `sandbox serve`).
//!
//! It owns the map from a profile reference (a bundled name, or the
//! canonical path of a file) to its pooled sandbox, the freshness check of
//! every entry, the least-recently-used bound, and the teardown of the
//! pools it replaces or drops. A lookup stats the profile's source files
//! (its whole `extends` chain) and, when one changed, loads the profile
//! again: an unchanged result keeps its pool, a changed one gets a new
//! pooled sandbox, and the old pool is torn down off the caller's path once
//! the runs in progress on it have finished (a caller still holding the old
//! `Arc<Sandbox>` can go on running with it, without containers made
//! ahead). A sandbox in an image is kept per profile and image, and made
//! again when the image's name comes to mean another manifest (a new pull
//! of its tag). What cannot be trusted is loaded again on every lookup: every
//! profile while `SANDBOX_PROFILE_DIR` is set (a bundled name may start
//! resolving to a new file at any time), and a file changed so recently
//! that an edit may have landed between its reading and its stat.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::{Images, PoolStats, RunError, Sandbox};
use crate::profile::load::{is_path, load_with_sources};
use crate::profile::{Profile, ProfileError};

/// Why a profile has no sandbox.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The profile could not be loaded (unknown name, unreadable or
    /// invalid file).
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Its sandbox could not be made (seccomp, cgroups, the pool thread).
    #[error(transparent)]
    Sandbox(#[from] RunError),
}

/// What a file's change would change: device, inode, size, mtime, ctime.
type Stamp = (u64, u64, u64, i64, i64, i64, i64);

fn stamp(path: &str) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| {
        (
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )
    })
}

struct Entry {
    sandbox: Arc<Sandbox>,
    used: Instant,
    /// The profile's source files as they were when loaded (`None`: never
    /// trusted, reload every time).
    sources: Option<Vec<(String, Option<Stamp>)>>,
}

/// Pooled sandboxes by profile (see the module docs).
pub struct SandboxCache {
    /// Containers kept ready per profile.
    pool: usize,
    /// Profiles kept at once; beyond, the least recently used goes.
    max_profiles: usize,
    entries: Mutex<HashMap<String, Entry>>,
    /// Threads shutting down replaced pools (joined by [`Self::shutdown`]).
    retiring: Mutex<Vec<JoinHandle<()>>>,
    /// Where images come from (`None`: a profile naming one fails).
    images: Option<std::sync::Arc<Images>>,
    /// Hits and misses of every pool it made, replaced ones included.
    stats: Arc<PoolStats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SandboxCache {
    /// A cache keeping `pool` containers ready per profile, for at most
    /// `max_profiles` profiles at once (`usize::MAX`: no bound).
    pub fn new(pool: usize, max_profiles: usize) -> SandboxCache {
        SandboxCache {
            pool: pool.max(1),
            max_profiles: max_profiles.max(1),
            entries: Mutex::new(HashMap::new()),
            retiring: Mutex::new(Vec::new()),
            images: None,
            stats: Arc::default(),
        }
    }

    /// The same cache, opening images (the profiles' `filesystem.image`, or
    /// a request's) through `images`.
    pub fn with_images(mut self, images: std::sync::Arc<Images>) -> SandboxCache {
        self.images = Some(images);
        self
    }

    pub fn images(&self) -> Option<&Images> {
        self.images.as_deref()
    }

    /// The pooled sandbox of profile `name` (a bundled name, or a path,
    /// relative to `cwd` if it is relative): the cached one if its files are
    /// unchanged (a stat each: loading and comparing costs ~0.3 ms), else
    /// made (or remade) from the profile as it is now.
    ///
    /// With `image`, the sandbox runs in that image (normalized reference)
    /// instead of the profile's root.
    pub fn get(
        &self,
        name: &str,
        cwd: &Path,
        image: Option<&str>,
    ) -> Result<Arc<Sandbox>, CacheError> {
        let mut key = key_for(name, cwd);
        if let Some(i) = image {
            key = format!("{key}\0{i}");
        }
        if let Some(sb) = self.cached(&key) {
            return Ok(sb);
        }
        let loaded_at = SystemTime::now();
        let (prof, files) = load_for(name, cwd)?;
        self.sandbox_for(&key, prof, image, files, loaded_at)
    }

    /// Whether `sb`'s image (if any) is still what its name means.
    fn image_fresh(&self, sb: &Sandbox) -> bool {
        match (sb.image(), &self.images) {
            (None, _) => true,
            (Some(img), Some(images)) => {
                images.current_digest(&img.name).as_deref() == Some(img.digest.as_str())
            }
            (Some(_), None) => false,
        }
    }

    /// The cached sandbox for `key`, if its profile's files are unchanged.
    fn cached(&self, key: &str) -> Option<Arc<Sandbox>> {
        let mut map = lock(&self.entries);
        let e = map.get_mut(key)?;
        let fresh = e.sources.as_ref()?.iter().all(|(f, st)| stamp(f) == *st);
        if !fresh || !self.image_fresh(&e.sandbox) {
            return None;
        }
        e.used = Instant::now();
        Some(e.sandbox.clone())
    }

    /// The pooled sandbox for `prof`, made (or remade, when the profile
    /// changed) as needed.
    fn sandbox_for(
        &self,
        key: &str,
        prof: Profile,
        image: Option<&str>,
        files: Vec<String>,
        loaded_at: SystemTime,
    ) -> Result<Arc<Sandbox>, CacheError> {
        let sources = sources_of(files, loaded_at);
        {
            let mut map = lock(&self.entries);
            if let Some(e) = map.get_mut(key)
                && e.sandbox.profile == prof
                && self.image_fresh(&e.sandbox)
            {
                // Touched but the same: keep the pool, trust the new stamps.
                e.used = Instant::now();
                e.sources = sources;
                return Ok(e.sandbox.clone());
            }
        }
        // Made outside the lock: other lookups need not wait for it.
        let sb = Sandbox::open(prof, image, self.images.as_deref())
            .and_then(|s| s.pooled_counted(self.pool, self.stats.clone()))?;
        let mut map = lock(&self.entries);
        let mut old = map.insert(
            key.to_string(),
            Entry {
                sandbox: sb.clone(),
                used: Instant::now(),
                sources,
            },
        );
        if old.is_none() && map.len() > self.max_profiles {
            let lru = map
                .iter()
                .filter(|(k, _)| k.as_str() != key)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            old = lru.and_then(|k| map.remove(&k));
        }
        drop(map);
        if let Some(e) = old {
            self.retire(e.sandbox);
        }
        Ok(sb)
    }

    /// Tears a replaced pool's containers down off the caller's path; runs
    /// still holding it finish first. Joined by [`Self::shutdown`].
    fn retire(&self, sb: Arc<Sandbox>) {
        let h = std::thread::Builder::new()
            .name("sandbox-retire".into())
            .spawn(move || sb.shutdown_pool());
        if let Ok(h) = h {
            let mut r = lock(&self.retiring);
            r.retain(|h| !h.is_finished());
            r.push(h);
        }
    }

    /// The pools' containers ready now (of the cached sandboxes), and
    /// their hits and misses since start.
    pub fn pool_stats(&self) -> (u64, u64, u64) {
        let ready: usize = lock(&self.entries)
            .values()
            .map(|e| e.sandbox.pool_ready())
            .sum();
        let (hits, misses) = self.stats.get();
        (ready as u64, hits, misses)
    }

    /// Forgets every cached sandbox (SIGHUP): the next use of a profile
    /// loads it fresh from its files. Their pools are torn down behind,
    /// once the runs holding them finish. Returns how many went.
    pub fn clear(&self) -> usize {
        let all: Vec<Entry> = lock(&self.entries).drain().map(|(_, e)| e).collect();
        let n = all.len();
        for e in all {
            self.retire(e.sandbox);
        }
        n
    }

    /// Waits for the replaced pools' teardown, then tears down every pool
    /// still held (runs in progress on them finish first). Blocks.
    pub fn shutdown(&self) {
        let retiring: Vec<_> = lock(&self.retiring).drain(..).collect();
        for h in retiring {
            let _ = h.join();
        }
        let all: Vec<Entry> = lock(&self.entries).drain().map(|(_, e)| e).collect();
        for e in all {
            e.sandbox.shutdown_pool();
        }
    }
}

/// The cache key of a profile reference: a bundled name, or the
/// canonical path of a file (relative to `cwd`).
fn key_for(name: &str, cwd: &Path) -> String {
    if is_path(name) {
        let p = cwd.join(name);
        std::fs::canonicalize(&p)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    } else {
        format!("bundled:{name}")
    }
}

fn load_for(name: &str, cwd: &Path) -> Result<(Profile, Vec<String>), ProfileError> {
    if is_path(name) && !Path::new(name).is_absolute() {
        load_with_sources(&cwd.join(name).to_string_lossy())
    } else {
        load_with_sources(name)
    }
}

/// Sources to watch for a profile loaded from `files` at `loaded_at`.
/// With an override directory, a bundled name may start resolving to a new
/// file at any time, so nothing is trusted; nor is a file changed so
/// recently that an edit may have landed between its reading and its stat
/// (the next lookup loads it again).
fn sources_of(files: Vec<String>, loaded_at: SystemTime) -> Option<Vec<(String, Option<Stamp>)>> {
    if std::env::var_os(crate::profile::bundled::OVERRIDE_ENV).is_some() {
        return None;
    }
    let settled = loaded_at
        .checked_sub(Duration::from_millis(50))
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let st = stamp(&f);
        if let Some(s) = st
            && s.5 >= settled
        {
            return None;
        }
        out.push((f, st));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_bundled_profiles_and_canonical_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("p.toml"), "").expect("write");
        assert_eq!(key_for("strict", dir.path()), "bundled:strict");
        let canon = std::fs::canonicalize(dir.path().join("p.toml")).expect("canonicalize");
        assert_eq!(key_for("p.toml", dir.path()), canon.to_string_lossy());
        assert_eq!(key_for("./p.toml", dir.path()), canon.to_string_lossy());
        // A missing file keeps its joined path (the load reports the error).
        let missing = dir.path().join("nope.toml");
        assert_eq!(key_for("nope.toml", dir.path()), missing.to_string_lossy());
    }

    #[test]
    fn recent_changes_are_not_trusted() {
        if std::env::var_os(crate::profile::bundled::OVERRIDE_ENV).is_some() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "").expect("write");
        let name = f.to_string_lossy().into_owned();
        // Changed in the second the profile was loaded: loaded again next time.
        assert!(sources_of(vec![name.clone()], SystemTime::now()).is_none());
        // Settled long before: its stamp is trusted.
        let later = SystemTime::now() + Duration::from_secs(5);
        let s = sources_of(vec![name.clone(), "strict.toml".into()], later).expect("trusted");
        assert_eq!(s[0], (name.clone(), stamp(&name)));
        // An embedded profile has no file: nothing to stat, nothing changes.
        assert_eq!(s[1], ("strict.toml".to_string(), None));
    }
}
