//! Where an import reads from: a directory (an OCI layout) or a tar file
//! (a `docker save` archive or an OCI layout in a tar; compressed ones are
//! decompressed to a scratch file first). Files are looked up by their
//! relative path. Nothing is trusted: a directory is read with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` and only regular files
//! (no symlink is followed, no FIFO opened for good); a tar is indexed once
//! (names checked and capped as for layers), its symlinks and hard links
//! resolved inside the archive, its files read in place with `pread`.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::beneath::{self, b};
use super::error::{ImageError, Result};
use super::layer::decompress;
use super::lock::Scratch;
use super::manifest::Compression;
use super::tarstream::{self, Kind};
use super::unpack::split_name;

/// Entries an import archive may hold.
const MAX_ARCHIVE_ENTRIES: usize = 1_000_000;

/// An import source.
pub enum Source {
    Dir {
        path: PathBuf,
        root: OwnedFd,
    },
    Tar {
        path: PathBuf,
        file: File,
        files: HashMap<String, (u64, u64)>,
        links: HashMap<String, String>,
    },
}

/// Reads `len` bytes at `off` of a file.
pub struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive truncated",
            ));
        }
        self.pos += got as u64;
        Ok(got)
    }
}

struct Counting<R> {
    inner: R,
    pos: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos.set(self.pos.get() + n as u64);
        Ok(n)
    }
}

impl Source {
    /// Opens `path`: a directory, or a tar file (decompressed into
    /// `scratch` first when compressed, up to `max` bytes).
    pub fn open(path: &Path, scratch: &Scratch, max: u64) -> Result<Source> {
        // The source is the request's: a missing one is not the store's failure.
        let md = std::fs::metadata(path)
            .map_err(|e| ImageError::invalid(path.display().to_string(), e.to_string()))?;
        if md.is_dir() {
            let root = beneath::open_root(path).map_err(|e| ImageError::io(path, e))?;
            return Ok(Source::Dir {
                path: path.to_path_buf(),
                root,
            });
        }
        if !md.is_file() {
            return Err(ImageError::invalid(
                path.display().to_string(),
                "not a directory nor a regular file",
            ));
        }
        let f = File::open(path).map_err(|e| ImageError::io(path, e))?;
        let (mut dec, c) = decompress(io::BufReader::new(&f), &path.display().to_string())?;
        let file = if c == Compression::None {
            drop(dec);
            File::open(path).map_err(|e| ImageError::io(path, e))?
        } else {
            let tmp = scratch.path().join("archive.tar");
            let mut out = File::create(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
            let mut capped = (&mut dec).take(max + 1);
            let n = io::copy(&mut capped, &mut out).map_err(|e| {
                ImageError::invalid(path.display().to_string(), format!("decompressing: {e}"))
            })?;
            if n > max {
                return Err(ImageError::TooLarge {
                    what: path.display().to_string(),
                    limit: max,
                    unit: "bytes (decompressed)",
                });
            }
            File::open(&tmp).map_err(|e| ImageError::io(&tmp, e))?
        };
        let (files, links) = index(&file, path)?;
        Ok(Source::Tar {
            path: path.to_path_buf(),
            file,
            files,
            links,
        })
    }

    /// The source's path (for errors).
    pub fn path(&self) -> &Path {
        match self {
            Source::Dir { path, .. } | Source::Tar { path, .. } => path,
        }
    }

    fn what(&self, rel: &str) -> String {
        format!("{}: {rel}", self.path().display())
    }

    /// Whether the file `rel` exists.
    pub fn exists(&self, rel: &str) -> bool {
        match self {
            Source::Dir { root, .. } => beneath::open_file(b(root), rel.as_bytes()).is_ok(),
            Source::Tar { .. } => self.locate(rel).is_ok(),
        }
    }

    fn locate(&self, rel: &str) -> Result<(u64, u64)> {
        let Source::Tar { files, links, .. } = self else {
            unreachable!("tar only")
        };
        let mut cur =
            normalize(rel).ok_or_else(|| ImageError::invalid(self.what(rel), "bad path"))?;
        for _ in 0..16 {
            if let Some(&(off, size)) = files.get(&cur) {
                return Ok((off, size));
            }
            match links.get(&cur) {
                Some(t) => cur = t.clone(),
                None => {
                    return Err(ImageError::invalid(
                        self.what(rel),
                        "no such file in the archive",
                    ));
                }
            }
        }
        Err(ImageError::invalid(self.what(rel), "too many links"))
    }

    /// A reader of the file `rel` and its size.
    pub fn open_file(&self, rel: &str) -> Result<(Box<dyn Read + '_>, u64)> {
        match self {
            Source::Dir { root, path } => {
                let f = beneath::open_file(b(root), rel.as_bytes()).map_err(|e| {
                    ImageError::invalid(
                        self.what(rel),
                        match e.raw_os_error() {
                            Some(libc::ELOOP) => "a symlink (not followed)".to_string(),
                            _ => e.to_string(),
                        },
                    )
                })?;
                let size = f
                    .metadata()
                    .map_err(|e| ImageError::io(path.join(rel), e))?
                    .len();
                Ok((Box::new(f), size))
            }
            Source::Tar { file, .. } => {
                let (off, size) = self.locate(rel)?;
                Ok((
                    Box::new(ReadAt {
                        file,
                        pos: off,
                        end: off + size,
                    }),
                    size,
                ))
            }
        }
    }

    /// The whole file `rel`, at most `max` bytes.
    pub fn read(&self, rel: &str, max: u64) -> Result<Vec<u8>> {
        let (r, size) = self.open_file(rel)?;
        if size > max {
            return Err(ImageError::TooLarge {
                what: self.what(rel),
                limit: max,
                unit: "bytes",
            });
        }
        let mut v = Vec::with_capacity(size as usize);
        r.take(max)
            .read_to_end(&mut v)
            .map_err(|e| ImageError::invalid(self.what(rel), e.to_string()))?;
        Ok(v)
    }
}

/// A path inside an archive, normalized (`a/./b//c`: `a/b/c`; `..` pops).
fn normalize(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

type Index = (HashMap<String, (u64, u64)>, HashMap<String, String>);

/// Every regular file of the tar (offset and size of its data) and every
/// link (its target, as an archive path).
fn index(file: &File, path: &Path) -> Result<Index> {
    let pos = Rc::new(Cell::new(0u64));
    let r = Counting {
        inner: io::BufReader::with_capacity(64 << 10, file),
        pos: pos.clone(),
    };
    let mut files = HashMap::new();
    let mut links = HashMap::new();
    let what = path.display().to_string();
    tarstream::for_each(r, |m, _data| -> Result<()> {
        if files.len() + links.len() >= MAX_ARCHIVE_ENTRIES {
            return Err(ImageError::TooLarge {
                what: what.clone(),
                limit: MAX_ARCHIVE_ENTRIES as u64,
                unit: "entries",
            });
        }
        let name = String::from_utf8_lossy(&m.path);
        let comps =
            split_name(&m.path).map_err(|r| ImageError::invalid(format!("{what}: {name:?}"), r))?;
        let key = comps
            .iter()
            .map(|c| String::from_utf8_lossy(c))
            .collect::<Vec<_>>()
            .join("/");
        match m.kind {
            Kind::File => {
                files.insert(key, (pos.get(), m.size));
            }
            Kind::Symlink | Kind::HardLink => {
                let t = String::from_utf8_lossy(m.link.as_deref().unwrap_or_default()).into_owned();
                let target = if m.kind == Kind::HardLink || t.starts_with('/') {
                    normalize(&t)
                } else {
                    let dir = key.rsplit_once('/').map_or("", |(d, _)| d);
                    normalize(&format!("{dir}/{t}"))
                };
                if let Some(target) = target {
                    files.remove(&key);
                    links.insert(key, target);
                }
            }
            _ => {}
        }
        Ok(())
    })
    .map_err(|e| match e {
        ImageError::Layer { reason, .. } | ImageError::Entry { reason, .. } => ImageError::invalid(
            what.clone(),
            format!("not a readable tar archive: {reason}"),
        ),
        e => e,
    })?;
    Ok((files, links))
}
