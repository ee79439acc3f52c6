//! `sandbox image pull|import|ls|inspect|rm|prune|du`: thin over
//! `crate::image::Store` and `crate::image::pull`. Exit codes: 0 done; 125
//! an error, whether the request or the image was at fault (a bad
//! reference, an unknown image, a hostile or broken image, a registry's 401
//! or 404, plain HTTP refused) or the store, the machine or the registry
//! failed (I/O, permissions, an unreachable registry, TLS, a 5xx). Errors
//! are one line on stderr; `--json` prints one JSON document on stdout, an
//! error included (`{"status": "sandbox_error", "error": ...}`).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Serialize;

use super::exec::EXIT_SANDBOX_ERROR;
use crate::image::{ImageError, Limits, Reference, RemoveReport, Store, store_path};
use crate::profile::units::parse_size;

macro_rules! out {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Pull an image from a registry (busybox, host:port/repo:tag, name@sha256:...).
    ///
    /// Loopback registries (127.0.0.0/8, ::1, localhost) are reached over plain HTTP, others over
    /// TLS; prefix REF with https:// or http:// to choose (plain HTTP only where allowed).
    Pull {
        /// The image: a Docker-style reference, optionally prefixed with http:// or https://.
        #[arg(value_name = "REF")]
        reference: String,
        /// Credentials: a Docker config.json (default $DOCKER_CONFIG/config.json or
        /// ~/.docker/config.json when present).
        #[arg(long, value_name = "FILE")]
        creds: Option<PathBuf>,
        /// PEM certificates to trust besides the system's roots.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Allow plain HTTP to this registry (repeatable).
        #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
        insecure_registry: Vec<String>,
        /// The platform an index is resolved to (default: this host's).
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        /// No progress display, only the final line.
        #[arg(long, short)]
        quiet: bool,
        /// Print one JSON document instead of text (errors too).
        #[arg(long)]
        json: bool,
    },
    /// Import a `docker save` archive or an OCI image layout (a directory or a tar).
    Import {
        /// The archive or layout.
        path: PathBuf,
        /// Name the image REF (replaces the names the source gives).
        #[arg(long, value_name = "REF")]
        name: Option<String>,
        /// Cap on one layer's unpacked bytes (default 32G).
        #[arg(long, value_name = "SIZE")]
        max_layer_size: Option<String>,
        /// Cap on the image's unpacked bytes, all layers (default 64G).
        #[arg(long, value_name = "SIZE")]
        max_image_size: Option<String>,
        /// Cap on one layer's entries (default 2000000).
        #[arg(long, value_name = "N")]
        max_layer_entries: Option<u64>,
        /// Cap on the image's entries, all layers (default 4000000).
        #[arg(long, value_name = "N")]
        max_image_entries: Option<u64>,
        /// Print one JSON document instead of text (errors too).
        #[arg(long)]
        json: bool,
    },
    /// List the images: names, digest, platform, layers, size.
    Ls {
        /// Print one JSON document instead of text (errors too).
        #[arg(long)]
        json: bool,
    },
    /// Show an image: its run config (user, env, workdir, entrypoint, cmd) and layers.
    Inspect {
        /// A name (busybox, hx/app:v1), NAME@sha256:..., or sha256:...
        reference: String,
        /// Print one JSON document instead of text (errors too).
        #[arg(long)]
        json: bool,
    },
    /// Remove names; an image left without one is removed with the layers no other image uses.
    Rm {
        /// The names (or digests) to remove.
        #[arg(required = true, value_name = "REF")]
        references: Vec<String>,
        /// Print one JSON document instead of text (errors too).
        #[arg(long)]
        json: bool,
    },
    /// Remove unnamed images, then every layer and blob no image uses (never one in use).
    Prune {
        /// Print one JSON document instead of text (errors too).
        #[arg(long)]
        json: bool,
    },
    /// The store's size: each layer once, which images share it, unique and shared bytes.
    Du {
        /// Print one JSON document instead of text (errors too).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ImageCommand, store: Option<&Path>) -> i32 {
    if let ImageCommand::Pull {
        reference,
        creds,
        ca,
        insecure_registry,
        platform,
        quiet,
        json,
    } = cmd
    {
        let opts = PullArgs {
            creds,
            ca,
            insecure_registry,
            platform,
            quiet,
            json,
        };
        return pull(store, &reference, opts);
    }
    let json = cmd.json();
    match exec(cmd, store) {
        Ok(code) => code,
        Err(e) => super::fail(json, &e),
    }
}

impl ImageCommand {
    /// Whether the command was asked for JSON.
    fn json(&self) -> bool {
        match self {
            ImageCommand::Pull { json, .. }
            | ImageCommand::Import { json, .. }
            | ImageCommand::Ls { json }
            | ImageCommand::Inspect { json, .. }
            | ImageCommand::Rm { json, .. }
            | ImageCommand::Prune { json }
            | ImageCommand::Du { json } => *json,
        }
    }
}

fn print_json<T: Serialize>(v: &T) {
    out!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn exec(cmd: ImageCommand, store: Option<&Path>) -> Result<i32, ImageError> {
    let store = Store::open(store_path(store))?;
    match cmd {
        ImageCommand::Import {
            path,
            name,
            max_layer_size,
            max_image_size,
            max_layer_entries,
            max_image_entries,
            json,
        } => {
            let mut l = Limits::default();
            let size = |flag: &str, v: Option<String>, dflt: u64| -> Result<u64, ImageError> {
                v.map_or(Ok(dflt), |s| {
                    parse_size(&s)
                        .map_err(|e| ImageError::invalid(format!("--{flag}"), e.to_string()))
                })
            };
            l.layer_bytes = size("max-layer-size", max_layer_size, l.layer_bytes)?;
            l.image_bytes = size("max-image-size", max_image_size, l.image_bytes)?;
            l.layer_inodes = max_layer_entries.unwrap_or(l.layer_inodes);
            l.image_inodes = max_image_entries.unwrap_or(l.image_inodes);
            let name = name.as_deref().map(Reference::parse).transpose()?;
            let store = store.with_limits(l);
            let done = store.import(&path, name.as_ref())?;
            if json {
                print_json(&done);
                return Ok(0);
            }
            for i in &done {
                let names = if i.names.is_empty() {
                    "(no name: give --name)".to_string()
                } else {
                    i.names.join(", ")
                };
                out!(
                    "{} {names}: {} layers, {} new",
                    i.digest,
                    i.layers,
                    i.new_layers
                );
            }
            Ok(0)
        }
        ImageCommand::Ls { json } => {
            let list = store.list()?;
            if json {
                print_json(&list);
                return Ok(0);
            }
            let rows: Vec<[String; 6]> = list
                .iter()
                .map(|i| {
                    [
                        if i.names.is_empty() {
                            "<none>".into()
                        } else {
                            i.names.join(",")
                        },
                        format!("sha256:{}", i.digest.short()),
                        i.platform.clone(),
                        i.layers.to_string(),
                        human(i.size),
                        human(i.unique_size),
                    ]
                })
                .collect();
            table(
                &["NAME", "DIGEST", "PLATFORM", "LAYERS", "SIZE", "UNIQUE"],
                &rows,
            );
            Ok(0)
        }
        ImageCommand::Inspect { reference, json } => inspect(&store, &reference, json),
        ImageCommand::Pull { .. } => unreachable!("handled by run"),
        ImageCommand::Rm { references, json } => {
            let mut all = Vec::new();
            let mut errors = Vec::new();
            let mut code = 0;
            for r in &references {
                match store.remove(r) {
                    Ok(rep) => {
                        if !json {
                            say_removed(&rep);
                        }
                        all.push(rep);
                    }
                    Err(e) => {
                        eprintln!("sandbox: {e}");
                        errors.push(e.to_string());
                        code = EXIT_SANDBOX_ERROR;
                    }
                }
            }
            if json {
                if errors.is_empty() {
                    print_json(&all);
                } else {
                    // One object still: what was removed, and why the rest was not.
                    print_json(&serde_json::json!({
                        "status": "sandbox_error",
                        "error": errors.join("; "),
                        "errors": errors,
                        "removed": all,
                    }));
                }
            }
            Ok(code)
        }
        ImageCommand::Prune { json } => {
            let rep = store.prune()?;
            if json {
                print_json(&rep);
            } else {
                say_removed(&rep);
            }
            Ok(0)
        }
        ImageCommand::Du { json } => {
            let u = store.usage()?;
            if json {
                print_json(&u);
                return Ok(0);
            }
            let rows: Vec<[String; 4]> = u
                .layers
                .iter()
                .map(|l| {
                    [
                        format!("sha256:{}", l.diff_id.short()),
                        human(l.content_bytes),
                        l.entries.to_string(),
                        if l.images.is_empty() {
                            "(unused)".into()
                        } else {
                            l.images.join(", ")
                        },
                    ]
                })
                .collect();
            table(&["LAYER", "SIZE", "ENTRIES", "USED BY"], &rows);
            out!(
                "layers: {} stored ({} shared by several images, {} unused); {} without sharing; blobs {}; on disk {}",
                human(u.unique_bytes),
                human(u.shared_bytes),
                human(u.unreferenced_bytes),
                human(u.logical_bytes),
                human(u.blob_bytes),
                human(u.disk_bytes)
            );
            Ok(0)
        }
    }
}

#[cfg_attr(not(feature = "registry"), allow(dead_code))]
struct PullArgs {
    creds: Option<PathBuf>,
    ca: Option<PathBuf>,
    insecure_registry: Vec<String>,
    platform: Option<String>,
    quiet: bool,
    json: bool,
}

/// `os/arch[/variant]`.
#[cfg_attr(not(feature = "registry"), allow(dead_code))]
fn parse_platform(s: &str) -> Option<crate::image::Platform> {
    let mut it = s.split('/');
    let (os, arch) = (it.next()?, it.next()?);
    let variant = it.next().map(str::to_string);
    if os.is_empty() || arch.is_empty() || it.next().is_some() {
        return None;
    }
    Some(crate::image::Platform {
        os: os.into(),
        architecture: arch.into(),
        variant,
        os_version: None,
    })
}

#[cfg(not(feature = "registry"))]
fn pull(_store: Option<&Path>, _reference: &str, a: PullArgs) -> i32 {
    super::fail(
        a.json,
        &"image pull: this build has no registry support (cargo feature `registry`)",
    )
}

#[cfg(feature = "registry")]
fn pull(store: Option<&Path>, reference: &str, a: PullArgs) -> i32 {
    use crate::image::pull::{PullOptions, pull};
    use std::io::IsTerminal;
    let platform = match a.platform.as_deref().map(|p| (p, parse_platform(p))) {
        None => None,
        Some((_, Some(p))) => Some(p),
        Some((p, None)) => {
            return super::fail(
                a.json,
                &format_args!("--platform {p:?}: expected OS/ARCH[/VARIANT] (linux/amd64)"),
            );
        }
    };
    let store = match Store::open(store_path(store)) {
        Ok(s) => s,
        Err(e) => return super::fail(a.json, &e),
    };
    let bars = (!a.quiet && !a.json && std::io::stderr().is_terminal()).then(progress::Bars::new);
    let opts = PullOptions {
        credentials: a.creds,
        ca_file: a.ca,
        insecure_registries: a.insecure_registry,
        platform,
        progress: bars.as_ref().map(progress::Bars::callback),
    };
    let res = pull(&store, reference, &opts);
    drop(bars);
    match res {
        Ok(p) => {
            if a.json {
                print_json(&p);
            } else {
                out!(
                    "pulled {} {}: {} layers, {} fetched ({}), {} present",
                    p.name.as_deref().unwrap_or(&p.reference),
                    p.digest,
                    p.layers,
                    p.layers_fetched,
                    human(p.bytes_fetched),
                    p.layers_present
                );
            }
            0
        }
        Err(e) => super::fail(a.json, &e),
    }
}

/// The progress display of `sandbox image pull` on a terminal: one bar
/// per fetched layer (bytes, speed), a line per layer already present.
#[cfg(feature = "registry")]
mod progress {
    use std::sync::{Arc, Mutex};

    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

    use crate::image::pull::{ProgressFn, PullEvent};

    pub struct Bars {
        mp: MultiProgress,
        bars: Arc<Mutex<Vec<Option<ProgressBar>>>>,
    }

    impl Bars {
        pub fn new() -> Bars {
            Bars {
                mp: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Arc::default(),
            }
        }

        pub fn callback(&self) -> ProgressFn {
            let mp = self.mp.clone();
            let bars = self.bars.clone();
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            Arc::new(move |e: &PullEvent<'_>| {
                let Ok(mut bars) = bars.lock() else { return };
                match e {
                    PullEvent::Manifest { digest, layers } => {
                        let _ = mp.println(format!("manifest {digest}: {} layers", layers.len()));
                        bars.resize(layers.len(), None);
                    }
                    PullEvent::LayerPresent { blob, .. } => {
                        let _ = mp.println(format!("{}: already present", blob.short()));
                    }
                    PullEvent::LayerStart { index, blob, size } => {
                        let b = mp.add(ProgressBar::new(*size));
                        b.set_style(style.clone());
                        b.set_prefix(blob.short().to_string());
                        if let Some(slot) = bars.get_mut(*index) {
                            *slot = Some(b);
                        }
                    }
                    PullEvent::LayerBytes { index, done } => {
                        if let Some(Some(b)) = bars.get(*index) {
                            b.set_position(*done);
                        }
                    }
                    PullEvent::LayerDone { index, fetched } => {
                        if let Some(Some(b)) = bars.get(*index) {
                            b.finish_with_message(if *fetched == 0 {
                                "present (another pull)"
                            } else {
                                "done"
                            });
                        }
                    }
                }
            })
        }
    }
}

fn inspect(store: &Store, reference: &str, json: bool) -> Result<i32, ImageError> {
    let rec = store.find(reference)?;
    let names = store.refs()?.names_of(&rec.digest);
    #[derive(Serialize)]
    struct Layer {
        diff_id: String,
        blob: String,
        media_type: String,
        blob_size: u64,
        size: u64,
        entries: u64,
    }
    #[derive(Serialize)]
    struct View<'a> {
        names: Vec<String>,
        #[serde(flatten)]
        record: &'a crate::image::ImageRecord,
        layer_sizes: Vec<Layer>,
    }
    let layers: Vec<Layer> = rec
        .layers
        .iter()
        .map(|l| {
            let m = store.layer_meta(&l.diff_id).ok();
            Layer {
                diff_id: l.diff_id.to_string(),
                blob: l.blob.to_string(),
                media_type: l.media_type.clone(),
                blob_size: l.blob_size,
                size: m.as_ref().map_or(0, |m| m.tar_bytes),
                entries: m.as_ref().map_or(0, |m| m.stats.entries),
            }
        })
        .collect();
    if json {
        print_json(&View {
            names,
            record: &rec,
            layer_sizes: layers,
        });
        return Ok(0);
    }
    let r = &rec.run;
    out!(
        "names:       {}",
        if names.is_empty() {
            "(none)".into()
        } else {
            names.join(", ")
        }
    );
    out!("digest:      {}", rec.digest);
    if let Some(i) = &rec.index {
        out!("index:       {i}");
    }
    out!("id:          {}", rec.config);
    out!("platform:    {}", rec.platform);
    if let Some(c) = &rec.created {
        out!("created:     {c}");
    }
    match &rec.user_error {
        None => out!(
            "user:        {:?} (uid {}, gid {}{})",
            r.user,
            r.uid,
            r.gid,
            groups(&r.additional_gids)
        ),
        Some(e) => out!("user:        {:?} (unresolved: {e})", r.user),
    }
    out!("working dir: {}", r.working_dir);
    out!("entrypoint:  {}", json_list(&r.entrypoint));
    out!("cmd:         {}", json_list(&r.cmd));
    out!("env:");
    for e in &r.env {
        out!("  {e}");
    }
    out!(
        "layers:      {} ({} unpacked, {} entries)",
        layers.len(),
        human(rec.content_bytes),
        rec.entries
    );
    for l in &layers {
        out!(
            "  {}  {:>9}  blob {:>9}  {}",
            l.diff_id,
            human(l.size),
            human(l.blob_size),
            l.media_type
        );
    }
    Ok(0)
}

fn groups(g: &[u32]) -> String {
    if g.is_empty() {
        return String::new();
    }
    format!(
        ", groups {}",
        g.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    )
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn say_removed(r: &RemoveReport) {
    for n in &r.untagged {
        out!("untagged: {n}");
    }
    for d in &r.images {
        out!("deleted image: {d}");
    }
    for d in &r.layers {
        out!("deleted layer: {d}");
    }
    for d in &r.in_use {
        eprintln!("sandbox: {d}: in use by a run or an import, kept (a later prune removes it)");
    }
    if !r.layers.is_empty() || !r.blobs.is_empty() {
        out!("freed {}", human(r.freed_bytes));
    }
}

/// Bytes for people: `512B`, `1.5KiB`, `2.0MiB`.
pub fn human(n: u64) -> String {
    const U: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1}{}", U[i])
}

fn table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) {
    let mut w = head.map(str::len);
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        out!("{}", s.trim_end());
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// How `sandbox exec --image` pulls a missing image: in this process, with
/// Docker's default credentials, a progress display on a terminal.
#[cfg(feature = "registry")]
pub fn fetch() -> Option<std::sync::Arc<crate::runner::images::Fetch>> {
    use std::io::IsTerminal;
    Some(std::sync::Arc::new(|store: &Store, reference: &str| {
        let bars = std::io::stderr().is_terminal().then(progress::Bars::new);
        let opts = crate::image::pull::PullOptions {
            progress: bars.as_ref().map(progress::Bars::callback),
            ..Default::default()
        };
        crate::image::pull::pull(store, reference, &opts)
            .map(|_| ())
            .map_err(Into::into)
    }))
}

#[cfg(not(feature = "registry"))]
pub fn fetch() -> Option<std::sync::Arc<crate::runner::images::Fetch>> {
    None
}

/// Options `sandbox serve` passes to the pulls it makes.
#[derive(Debug, Clone, Default)]
pub struct ChildPull {
    pub creds: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub insecure_registries: Vec<String>,
    /// A pull still running after this long is killed.
    pub timeout: std::time::Duration,
}

/// How `sandbox serve` pulls a missing image: `sandbox image pull` in a
/// child process of its own. The registry client's threads, memory and
/// hostile-input parsing stay out of the server, whose executors clone
/// containers (a thread created mid-clone can hang the child: see
/// job::queue::executor); a pull that hangs is killed at its timeout.
pub fn fetch_in_child(
    store_dir: PathBuf,
    o: ChildPull,
) -> std::sync::Arc<crate::runner::images::Fetch> {
    std::sync::Arc::new(move |_store: &Store, reference: &str| {
        use std::process::{Command, Stdio};
        let mut c = Command::new("/proc/self/exe");
        c.arg("--store")
            .arg(&store_dir)
            .args(["image", "pull", "--quiet"]);
        if let Some(f) = &o.creds {
            c.arg("--creds").arg(f);
        }
        if let Some(f) = &o.ca {
            c.arg("--ca").arg(f);
        }
        for r in &o.insecure_registries {
            c.arg("--insecure-registry").arg(r);
        }
        let err_file = tempfile::tempfile()?;
        let mut child = c
            .arg("--")
            .arg(reference)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file.try_clone()?)
            .spawn()?;
        let t0 = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if t0.elapsed() > o.timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(
                    format!("no answer within {:?}: the pull was stopped", o.timeout).into(),
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        if status.success() {
            return Ok(());
        }
        let mut msg = String::new();
        use std::io::{Read, Seek};
        let mut f = err_file;
        f.rewind()?;
        f.take(64 * 1024).read_to_string(&mut msg)?;
        let msg = msg
            .trim()
            .trim_start_matches("sandbox: ")
            .replace('\n', "; ");
        Err(if msg.is_empty() {
            format!("sandbox image pull: {status}")
        } else {
            msg
        }
        .into())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human(512), "512B");
        assert_eq!(super::human(1536), "1.5KiB");
        assert_eq!(super::human(3 << 30), "3.0GiB");
    }
}
