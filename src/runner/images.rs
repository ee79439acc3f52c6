//! Images for runs ([`Images`]): an image reference turned into a
//! [`RunImage`] from the store, pulled first when it is missing and the
//! policy allows it. One pull per image at a time: runs that need an image
//! being pulled wait for that pull instead of starting their own. The
//! registry client itself is not here: whoever makes an `Images` (the CLI,
//! the server) hands it a [`Fetch`] with its options (credentials, CA,
//! allowed plain-HTTP registries), so the runner does not depend on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::RunImage;
use crate::image::{ImageError, Reference, Store};

/// When a run's image is pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Only when the store lacks it (the default).
    #[default]
    Missing,
    /// Never: a missing image is an error.
    Never,
    /// Before every sandbox made for it (the registry's tag wins).
    Always,
}

impl PullPolicy {
    pub fn parse(s: &str) -> Option<PullPolicy> {
        match s {
            "missing" => Some(PullPolicy::Missing),
            "never" => Some(PullPolicy::Never),
            "always" => Some(PullPolicy::Always),
            _ => None,
        }
    }
}

/// Pulls one image (a normalized reference) into the store.
pub type Fetch =
    dyn Fn(&Store, &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send + Sync;

/// Why a run has no image.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("image {0}")]
    Store(#[from] ImageError),
    #[error(
        "image {reference}: not in the store {store} (pull it with `sandbox image pull {reference}`, or import it with `sandbox image import`)"
    )]
    Missing { reference: String, store: String },
    #[error("image {reference}: pulling: {reason}")]
    Pull { reference: String, reason: String },
}

/// The store, the pull policy and the pulls in progress.
pub struct Images {
    store: Store,
    policy: PullPolicy,
    fetch: Option<Arc<Fetch>>,
    /// One lock per image being pulled: the first run pulls, the others
    /// wait on it and then find the image in the store.
    pulling: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl std::fmt::Debug for Images {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Images")
            .field("store", &self.store.path())
            .field("policy", &self.policy)
            .field("fetch", &self.fetch.is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Images {
    /// Images from `store`; `fetch` pulls (`None`: no registry, as with
    /// [`PullPolicy::Never`]).
    pub fn new(store: Store, policy: PullPolicy, fetch: Option<Arc<Fetch>>) -> Images {
        Images {
            store,
            policy,
            fetch,
            pulling: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// `reference` normalized (`busybox` is `docker.io/library/busybox:latest`).
    pub fn normalize(reference: &str) -> Result<String, ImagesError> {
        Ok(Reference::parse(reference)?.to_string())
    }

    /// The manifest digest `reference` names in the store now (`None`:
    /// not there). Cheap: one small file read.
    pub fn current_digest(&self, reference: &str) -> Option<String> {
        self.store
            .find(reference)
            .ok()
            .map(|r| r.digest.to_string())
    }

    /// The image `reference` ready to be a run's root, pulled first if the
    /// policy says so.
    pub fn open(&self, reference: &str) -> Result<RunImage, ImagesError> {
        let name = Images::normalize(reference)?;
        if self.policy == PullPolicy::Always {
            self.pull(&name, false)?;
        }
        match self.store.resolve(&name) {
            Ok(r) => return Ok(RunImage::from_resolved(r)),
            Err(ImageError::NotFound { .. }) if self.policy == PullPolicy::Missing => {}
            Err(ImageError::NotFound { .. }) => return Err(self.missing(&name)),
            Err(e) => return Err(e.into()),
        }
        self.pull(&name, true)?;
        Ok(RunImage::from_resolved(self.store.resolve(&name)?))
    }

    /// Pulls `reference` if the store lacks it, whatever the policy (for a
    /// caller that opens with [`PullPolicy::Never`] where waiting is not
    /// allowed, and pulls where it is).
    pub fn ensure(&self, reference: &str) -> Result<(), ImagesError> {
        let name = Images::normalize(reference)?;
        if self.store.find(&name).is_ok() {
            return Ok(());
        }
        self.pull(&name, true)
    }

    fn missing(&self, name: &str) -> ImagesError {
        ImagesError::Missing {
            reference: name.to_string(),
            store: self.store.path().display().to_string(),
        }
    }

    /// Pulls `name` unless another run is pulling it (then waits for that
    /// pull); with `if_missing`, not when the waiting ended with the image
    /// in the store.
    fn pull(&self, name: &str, if_missing: bool) -> Result<(), ImagesError> {
        let Some(fetch) = &self.fetch else {
            return Err(self.missing(name));
        };
        let gate = lock(&self.pulling)
            .entry(name.to_string())
            .or_default()
            .clone();
        let res = {
            let _one = lock(&gate);
            if if_missing && self.store.find(name).is_ok() {
                Ok(()) // pulled by the run we waited for
            } else {
                tracing::info!(image = name, "pulling");
                fetch(&self.store, name).map_err(|e| ImagesError::Pull {
                    reference: name.to_string(),
                    reason: e.to_string(),
                })
            }
        };
        let mut map = lock(&self.pulling);
        // Dropped by the last one out (the map's own handle and ours).
        if Arc::strong_count(&gate) == 2 {
            map.remove(name);
        }
        res
    }
}
