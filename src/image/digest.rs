//! Content digests (`sha256:<64 hex>`, the only algorithm the store keeps)
//! and the readers that hash what passes through them, with a byte cap.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::error::{ImageError, Result};

/// A sha256 content digest. Always lowercase hex, 64 digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`. Other algorithms (sha512, ...)
    /// are refused: the store names everything by sha256.
    pub fn parse(s: &str) -> Result<Digest> {
        let err = |reason: &str| ImageError::Digest {
            digest: s.to_string(),
            reason: reason.to_string(),
        };
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(err("expected ALGORITHM:HEX"));
        };
        if algo != "sha256" {
            return Err(err("only sha256 digests are supported"));
        }
        Digest::from_hex(hex).ok_or_else(|| err("expected 64 lowercase hex digits after sha256:"))
    }

    /// A digest from its 64 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Option<Digest> {
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then(
            || Digest {
                hex: hex.to_string(),
            },
        )
    }

    /// The sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha(Sha256::digest(bytes).into())
    }

    fn from_sha(sum: [u8; 32]) -> Digest {
        let mut hex = String::with_capacity(64);
        for b in sum {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        Digest { hex }
    }

    /// The 64 hex digits (the file and directory names in the store).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A reader that hashes everything read through it and fails once more
/// than `limit` bytes went through (so a stream announced small, or a
/// decompression bomb, cannot run on).
pub struct HashReader<R> {
    inner: R,
    sha: Sha256,
    count: u64,
    limit: u64,
    over: bool,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        HashReader {
            inner,
            sha: Sha256::new(),
            count: 0,
            limit,
            over: false,
        }
    }

    /// Whether a read went past the limit (whatever error the caller saw
    /// came from that).
    pub fn over_limit(&self) -> bool {
        self.over
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reads the rest of the stream (into the hash), up to the limit.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }

    /// The digest of what was read, and how many bytes.
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_sha(self.sha.finalize().into()), self.count)
    }
}

/// The error a [`HashReader`] returns past its limit (recognised by
/// [`is_over_limit`]).
#[derive(Debug)]
struct OverLimit;

impl fmt::Display for OverLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stream longer than its limit")
    }
}

impl std::error::Error for OverLimit {}

/// Whether an I/O error is a [`HashReader`]'s limit.
pub fn is_over_limit(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<OverLimit>())
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.count >= self.limit {
            // One byte more tells "exactly at the limit" from "over it".
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.over = true;
                    Err(io::Error::other(OverLimit))
                }
            };
        }
        let room = usize::try_from(self.limit - self.count).unwrap_or(usize::MAX);
        let n = buf.len().min(room);
        let got = self.inner.read(&mut buf[..n])?;
        self.sha.update(&buf[..got]);
        self.count += got as u64;
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert_eq!(d.short(), "e3b0c44298fc");
        for bad in [
            "e3b0",
            "sha512:00",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:../../../../etc/passwd/0000000000000000000000000000000000000000",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hash_reader_hashes_and_caps() {
        let mut r = HashReader::new(&b"hello"[..], 5);
        r.drain().unwrap();
        assert_eq!(r.finish(), (Digest::of(b"hello"), 5));
        let mut r = HashReader::new(&b"hello!"[..], 5);
        let e = r.drain().unwrap_err();
        assert!(is_over_limit(&e));
    }
}
