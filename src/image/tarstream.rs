//! A layer's tar stream as a sequence of entries, with the extension
//! headers (GNU long names and links, PAX records) applied here under caps:
//! the `tar` crate reads them into memory without a bound, so it is used in
//! raw mode and this file does what its non-raw mode would.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

use tar::EntryType;

use super::error::one_line;
use super::limits::{MAX_PAX_HEADER, MAX_TAR_NAME};

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Fifo,
    CharDevice,
    BlockDevice,
}

/// One entry's header, with long names and PAX records applied.
#[derive(Debug)]
pub struct Meta {
    pub kind: Kind,
    /// The name as stored (not yet checked).
    pub path: Vec<u8>,
    /// A symlink's target or a hard link's source.
    pub link: Option<Vec<u8>>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub size: u64,
}

/// Why the stream could not be read: `None` path for the stream itself.
#[derive(Debug)]
pub struct TarError {
    pub entry: Option<Vec<u8>>,
    pub reason: String,
    /// The underlying I/O error, when there was one (a cap of the reader).
    pub io: Option<std::io::Error>,
}

fn err(entry: Option<&[u8]>, reason: impl Into<String>) -> TarError {
    TarError {
        entry: entry.map(<[u8]>::to_vec),
        reason: one_line(&reason.into()),
        io: None,
    }
}

/// The `tar` crate's messages quote header bytes as they are.
fn io_err(entry: Option<&[u8]>, e: std::io::Error) -> TarError {
    TarError {
        entry: entry.map(<[u8]>::to_vec),
        reason: one_line(&e.to_string()),
        io: Some(e),
    }
}

/// Calls `each` for every entry of the tar stream `r`, with its header and
/// a reader of its data, until the end-of-archive marker (what follows it
/// is left unread). `each`'s error stops the walk.
pub fn for_each<R: Read, E>(
    r: R,
    mut each: impl FnMut(&Meta, &mut dyn Read) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<TarError>,
{
    let mut archive = tar::Archive::new(r);
    let entries = archive.entries().map_err(|e| io_err(None, e))?.raw(true);
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let mut pax: Option<HashMap<String, Vec<u8>>> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_err(long_name.as_deref(), e))?;
        let h = entry.header().clone();
        let ty = h.entry_type();
        let size = h
            .entry_size()
            .map_err(|e| io_err(Some(&h.path_bytes()), e))?;
        match ty {
            EntryType::GNULongName | EntryType::GNULongLink => {
                let v = read_capped(&mut entry, size, MAX_TAR_NAME, "a GNU long name")?;
                let v = trim_nul(v);
                if ty == EntryType::GNULongName {
                    long_name = Some(v);
                } else {
                    long_link = Some(v);
                }
                continue;
            }
            EntryType::XHeader => {
                let v = read_capped(&mut entry, size, MAX_PAX_HEADER, "a PAX header")?;
                pax = Some(parse_pax(&v)?);
                continue;
            }
            EntryType::XGlobalHeader => {
                // Global defaults: not used by image builders; read and ignored.
                read_capped(&mut entry, size, MAX_PAX_HEADER, "a PAX global header")?;
                continue;
            }
            _ => {}
        }
        let p = pax.take().unwrap_or_default();
        let path = match p.get("path") {
            Some(v) => v.clone(),
            None => long_name
                .take()
                .unwrap_or_else(|| h.path_bytes().into_owned()),
        };
        long_name = None;
        let e = |reason: &str| err(Some(&path), reason);
        let kind = match ty {
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::HardLink,
            EntryType::Fifo => Kind::Fifo,
            EntryType::Char => Kind::CharDevice,
            EntryType::Block => Kind::BlockDevice,
            EntryType::GNUSparse => return Err(e("sparse files are not supported").into()),
            other => {
                return Err(e(&format!(
                    "unsupported entry type {:?}",
                    other.as_byte() as char
                ))
                .into());
            }
        };
        if p.keys().any(|k| k.starts_with("GNU.sparse.")) {
            return Err(e("sparse files (PAX) are not supported").into());
        }
        if let Some(s) = p.get("size")
            && parse_u64(s) != Some(size)
        {
            return Err(e(
                "PAX size differs from the header's (files over 8 GiB are not supported)",
            )
            .into());
        }
        let link = match p.get("linkpath") {
            Some(v) => Some(v.clone()),
            None => long_link
                .take()
                .or_else(|| h.link_name_bytes().map(Cow::into_owned)),
        };
        long_link = None;
        let id = |key: &str, header: std::io::Result<u64>| -> Result<u32, TarError> {
            let v = match p.get(key) {
                Some(v) => parse_u64(v).ok_or_else(|| e(&format!("PAX {key} is not a number")))?,
                None => header.map_err(|x| io_err(Some(&path), x))?,
            };
            u32::try_from(v).map_err(|_| e(&format!("{key} {v} out of range")))
        };
        let uid = id("uid", h.uid())?;
        let gid = id("gid", h.gid())?;
        let (mtime, mtime_nsec) = match p.get("mtime") {
            Some(v) => parse_time(v).ok_or_else(|| e("PAX mtime is not a time"))?,
            None => {
                let t = h.mtime().map_err(|x| io_err(Some(&path), x))?;
                (i64::try_from(t).unwrap_or(i64::MAX), 0)
            }
        };
        let mode = h.mode().map_err(|x| io_err(Some(&path), x))? & 0o7777;
        let meta = Meta {
            kind,
            path,
            link,
            mode,
            uid,
            gid,
            mtime,
            mtime_nsec,
            size,
        };
        each(&meta, &mut entry)?;
    }
    if long_name.is_some() || long_link.is_some() || pax.is_some() {
        return Err(err(None, "extension header without an entry after it").into());
    }
    Ok(())
}

fn read_capped(r: &mut dyn Read, size: u64, cap: u64, what: &str) -> Result<Vec<u8>, TarError> {
    if size > cap {
        return Err(err(
            None,
            format!("{what} of {size} bytes (the limit is {cap})"),
        ));
    }
    let mut v = Vec::with_capacity(size as usize);
    r.take(size)
        .read_to_end(&mut v)
        .map_err(|e| io_err(None, e))?;
    if (v.len() as u64) < size {
        return Err(err(None, format!("{what}: truncated")));
    }
    Ok(v)
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// PAX records: `LEN KEY=VALUE\n`, LEN counting the whole record.
fn parse_pax(mut data: &[u8]) -> Result<HashMap<String, Vec<u8>>, TarError> {
    let bad = || err(None, "malformed PAX header");
    let mut out = HashMap::new();
    while !data.is_empty() {
        let sp = data.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad());
        }
        let rec = &data[sp + 1..len - 1];
        let eq = rec.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let key = String::from_utf8_lossy(&rec[..eq]).into_owned();
        out.insert(key, rec[eq + 1..].to_vec());
        data = &data[len..];
    }
    Ok(out)
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A PAX time: `SECONDS[.FRACTION]`, possibly negative.
fn parse_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nsec = 0u32;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nsec += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    Some((secs, nsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_parse() {
        let p = parse_pax(b"12 path=a/b\n12 uid=1000\n").unwrap();
        assert_eq!(p["path"], b"a/b");
        assert_eq!(p["uid"], b"1000");
        for bad in [
            &b"8 path=a\n"[..],
            b"x path=a\n",
            b"11 patha/b\n",
            b"99 a=b\n",
        ] {
            assert!(parse_pax(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_time(b"12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_time(b"-3"), Some((-3, 0)));
        assert_eq!(parse_time(b"1.x"), None);
    }
}
