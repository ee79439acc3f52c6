//! Layer tars made byte by byte, for the tests and the fuzz seeds: names
//! are written as given (`../x`, `/etc/x`), which the `tar` crate's own
//! builder refuses to do.

use std::io::Write;

/// A tar stream under construction (GNU headers).
pub struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TarBuilder {
    pub fn new() -> Self {
        TarBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }

    /// Any entry: `kind` is the tar type byte (`b'0'` file, `b'5'` dir,
    /// `b'2'` symlink, `b'1'` hard link, `b'3'` char device, `b'6'` FIFO).
    /// Names longer than 100 bytes get a GNU long-name entry first.
    #[allow(clippy::too_many_arguments)]
    pub fn raw(
        &mut self,
        kind: u8,
        path: &[u8],
        link: &[u8],
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        if path.len() > 100 {
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().expect("gnu").name[..13].copy_from_slice(b"././@LongLink");
            h.set_entry_type(tar::EntryType::GNULongName);
            h.set_size(path.len() as u64 + 1);
            h.set_mode(0o644);
            h.set_cksum();
            let mut name = path.to_vec();
            name.push(0);
            self.b.append(&h, &name[..]).expect("append");
        }
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().expect("gnu");
            let n = path.len().min(100);
            g.name[..n].copy_from_slice(&path[..n]);
            let l = link.len().min(100);
            g.linkname[..l].copy_from_slice(&link[..l]);
        }
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.b.append(&h, data).expect("append");
        self
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.raw(b'0', path.as_bytes(), b"", data, 0o644, 0, 0)
    }

    pub fn file_mode(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        self.raw(b'0', path.as_bytes(), b"", data, mode, uid, gid)
    }

    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.raw(b'5', path.as_bytes(), b"", b"", 0o755, 0, 0)
    }

    pub fn dir_mode(&mut self, path: &str, mode: u32) -> &mut Self {
        self.raw(b'5', path.as_bytes(), b"", b"", mode, 0, 0)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(b'2', path.as_bytes(), target.as_bytes(), b"", 0o777, 0, 0)
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(b'1', path.as_bytes(), target.as_bytes(), b"", 0o644, 0, 0)
    }

    pub fn device(&mut self, path: &str, block: bool) -> &mut Self {
        self.raw(
            if block { b'4' } else { b'3' },
            path.as_bytes(),
            b"",
            b"",
            0o666,
            0,
            0,
        )
    }

    pub fn fifo(&mut self, path: &str) -> &mut Self {
        self.raw(b'6', path.as_bytes(), b"", b"", 0o600, 0, 0)
    }

    /// A PAX header for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = [k.as_bytes(), b"=", v, b"\n"].concat();
            // LEN counts itself.
            let mut len = body.len() + 2;
            while format!("{len} ").len() + body.len() != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len} ").as_bytes());
            data.extend_from_slice(&body);
        }
        self.raw(b'x', b"PaxHeader", b"", &data, 0o644, 0, 0)
    }

    /// The tar stream, with its end-of-archive marker.
    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().expect("finish")
    }
}

/// Gzips bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}
