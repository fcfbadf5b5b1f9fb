//! Request bodies deflated in the journal when that pays: a gridX event's JSON shrinks by a
//! third (549 → ~350 bytes), a Wattmon block's urlencoded CSV by far more; an image not at
//! all, and is kept as it came. `requests.packed` says which; every reader inflates, so the
//! body read back is the received one byte for byte. Fast deflate (level 1) with one
//! compressor kept by the writer thread: its tables are set up once, not per request.

use std::borrow::Cow;
use std::io::Read;

use flate2::{Compress, Compression, FlushCompress, Status};

use super::JournalError;

/// Bodies shorter than this are kept as they came (too little to gain).
const MIN_PACKED: usize = 128;

/// The writer's compressor.
pub struct Packer {
    compress: Compress,
    out: Vec<u8>,
}

impl Default for Packer {
    fn default() -> Self {
        Self { compress: Compress::new(Compression::fast(), false), out: Vec::new() }
    }
}

impl Packer {
    /// `body` deflated when that saves at least an eighth (`true`), else as it is.
    pub fn pack<'a>(&'a mut self, body: &'a [u8]) -> (Cow<'a, [u8]>, bool) {
        if body.len() < MIN_PACKED {
            return (Cow::Borrowed(body), false);
        }
        self.compress.reset();
        self.out.clear();
        let room = body.len() - body.len() / 8;
        self.out.reserve(room);
        match self.compress.compress_vec(body, &mut self.out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) if self.out.len() <= room => (Cow::Borrowed(&self.out), true),
            _ => (Cow::Borrowed(body), false),
        }
    }
}

/// The body of request `id` as received.
pub fn unpack(id: i64, body: Vec<u8>, packed: bool) -> Result<Vec<u8>, JournalError> {
    if !packed {
        return Ok(body);
    }
    let mut out = Vec::with_capacity(body.len() * 3);
    flate2::read::DeflateDecoder::new(body.as_slice())
        .read_to_end(&mut out)
        .map_err(|source| JournalError::Unpack { id, source })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_body_comes_back_byte_for_byte_and_an_incompressible_one_is_kept() {
        let mut packer = Packer::default();
        let json = br#"{"id":"0f8fad5b-d9cb-469f-a165-708677289500","time":"2025-09-01T12:00:00Z","type":"appliance/online","data":{"applianceID":"fc0a6ac7","type":"METER","kind":"GRID","name":"ExampleMeter"}}"#.repeat(2);
        let (packed, yes) = packer.pack(&json);
        let packed = packed.into_owned();
        assert!(yes && packed.len() < json.len() / 2, "{} of {}", packed.len(), json.len());
        assert_eq!(unpack(1, packed, true).unwrap(), json);
        // Digests of digests: bytes with nothing for deflate to find (as in an image).
        let noise: Vec<u8> =
            (0..128u32).flat_map(|i| <sha2::Sha256 as sha2::Digest>::digest(i.to_le_bytes()).to_vec()).collect();
        let (kept, no) = packer.pack(&noise);
        assert!(!no && *kept == noise[..]);
        assert!(!packer.pack(b"short").1);
        assert!(unpack(2, b"not deflate".to_vec(), true).is_err());
    }
}
