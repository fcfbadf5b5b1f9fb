//! Request bodies deflated in the journal when that pays: a gridX event's JSON shrinks by
//! half, a Wattmon block's urlencoded CSV by far more; an image not at all, and is kept as it
//! came. `requests.packed` says how: 0 as received, 1 deflated (layout versions 3 and 4), 2
//! deflated after [`DICTIONARY`] — the field names and values the built-in protocols' bodies
//! repeat, which deflate then refers back to instead of spelling them in every small body.
//! Every reader inflates, so the body read back is the received one byte for byte. Fast
//! deflate (level 1) with one compressor kept by the writer thread: its tables are set up
//! once, not per request.
//!
//! The dictionary is deflate's preset dictionary: the writer's compressor starts each body
//! with it in its window (`set_dictionary`), so the body's stream may refer back into it. A
//! reader puts the dictionary in front as a stored block — the same window — and drops its
//! bytes from what inflates. The dictionary's bytes can therefore never change: another
//! dictionary would be another `packed` value.

use std::borrow::Cow;
use std::io::Read;

use flate2::{Compress, Compression, FlushCompress, Status};

use super::JournalError;

/// Bodies shorter than this are kept as they came (too little to gain).
const MIN_PACKED: usize = 64;

/// `requests.packed` of a body deflated on its own.
const DEFLATED: i64 = 1;

/// `requests.packed` of a body deflated after [`DICTIONARY`].
const WITH_DICTIONARY: i64 = 2;

/// What bodies repeat (the later, the cheaper to refer to). Never to be changed: bodies
/// journaled with it need exactly these bytes to inflate.
const DICTIONARY: &[u8] = br#"key=00%3A&md5sum=&data=Time%2CVoltage%2CCurrent%2C%0A2025-0+12%3A00%3A00%2C
[{"timestamp":"","timestampLong":"","name":"main","rawValue":"","value":"","preValue":"","rate":"","changeAbsolute":"","error":"no error"}]
{"deviceId":"","property":"","timestamp":,"payload":,"scaledPayload":null,"unit":"","tags":{},"kind":"","extra":{}}
{"applianceID":"","gatewayID":"","model":"","manufacturer":"","type":"METER","kind":"GRID","name":"","serialNumber":"","gatewayType":"GRIDBOX","systemID":"","systemName":"","gatewayName":"","gatewaySerialnumber":"","userID":"","userName":"","userMail":"","status":"","power":,"energy":,"state":"","value":,"unit":"W","timestamp":""}
{"id":"-0000-4000-8000-","time":"2026-","dataContentType":"application/json","specVersion":"1.0","source":"/systems/","correlationId":"","type":"appliance/online","data":{"message":""}}
{"id":"-0000-4000-8000-","time":"2026-","specVersion":"1.0","source":"/systems/","type":"ping","data":{"message":""}}"#;

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
    /// `body` deflated after the dictionary when that saves at least an eighth (its
    /// `packed` value), else as it is (0).
    pub fn pack<'a>(&'a mut self, body: &'a [u8]) -> (Cow<'a, [u8]>, i64) {
        if body.len() < MIN_PACKED {
            return (Cow::Borrowed(body), 0);
        }
        self.compress.reset();
        self.out.clear();
        self.out.reserve(body.len() + 64);
        if self.compress.set_dictionary(DICTIONARY).is_err() {
            return (Cow::Borrowed(body), 0);
        }
        let room = body.len() - body.len() / 8;
        match self.compress.compress_vec(body, &mut self.out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) if self.out.len() <= room => (Cow::Borrowed(&self.out[..]), WITH_DICTIONARY),
            _ => (Cow::Borrowed(body), 0),
        }
    }
}

/// The body of request `id` as received, from its stored bytes and `packed` value.
pub fn unpack(id: i64, body: Vec<u8>, packed: i64) -> Result<Vec<u8>, JournalError> {
    let unpack = |source| JournalError::Unpack { id, source };
    match packed {
        0 => Ok(body),
        DEFLATED => inflate(&body, body.len() * 3).map_err(unpack),
        WITH_DICTIONARY => {
            let mut stream = dictionary_block();
            stream.extend_from_slice(&body);
            let mut out = inflate(&stream, DICTIONARY.len() + body.len() * 4).map_err(unpack)?;
            if out.len() < DICTIONARY.len() {
                return Err(unpack(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(out.split_off(DICTIONARY.len()))
        }
        other => Err(unpack(std::io::Error::other(format!("unknown packing {other}")))),
    }
}

fn inflate(stream: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(capacity);
    flate2::read::DeflateDecoder::new(stream).read_to_end(&mut out)?;
    Ok(out)
}

/// The dictionary as a stored (uncompressed), not final deflate block.
fn dictionary_block() -> Vec<u8> {
    let len = DICTIONARY.len() as u16;
    let mut block = Vec::with_capacity(DICTIONARY.len() + 5 + 256);
    block.push(0); // BFINAL 0, BTYPE 00 (stored), the rest of the byte padding
    block.extend_from_slice(&len.to_le_bytes());
    block.extend_from_slice(&(!len).to_le_bytes());
    block.extend_from_slice(DICTIONARY);
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_body_comes_back_byte_for_byte_and_an_incompressible_one_is_kept() {
        let mut packer = Packer::default();
        let json = br#"{"id":"0f8fad5b-d9cb-469f-a165-708677289500","time":"2025-09-01T12:00:00Z","type":"appliance/online","data":{"applianceID":"fc0a6ac7","type":"METER","kind":"GRID","name":"ExampleMeter"}}"#.repeat(2);
        let (packed, how) = packer.pack(&json);
        let packed = packed.into_owned();
        assert!(how == WITH_DICTIONARY && packed.len() < json.len() / 2, "{} of {}", packed.len(), json.len());
        assert_eq!(unpack(1, packed, how).unwrap(), json);
        // Digests of digests: bytes with nothing for deflate to find (as in an image).
        let noise: Vec<u8> =
            (0..128u32).flat_map(|i| <sha2::Sha256 as sha2::Digest>::digest(i.to_le_bytes()).to_vec()).collect();
        let (kept, no) = packer.pack(&noise);
        assert!(no == 0 && *kept == noise[..]);
        assert_eq!(packer.pack(b"short").1, 0);
        assert!(unpack(2, b"not deflate".to_vec(), DEFLATED).is_err());
        assert!(unpack(2, b"not deflate".to_vec(), WITH_DICTIONARY).is_err());
        assert!(unpack(2, Vec::new(), 7).is_err(), "an unknown packing is an error, not the bytes");
    }

    /// Bodies of versions 3 and 4, deflated on their own, still read back.
    #[test]
    fn a_body_deflated_without_the_dictionary_reads_back() {
        let json = br#"{"id":"1","data":{"message":"an older journal's body, an older journal's body"}}"#;
        let mut plain = flate2::write::DeflateEncoder::new(Vec::new(), Compression::fast());
        std::io::Write::write_all(&mut plain, json).unwrap();
        assert_eq!(unpack(1, plain.finish().unwrap(), DEFLATED).unwrap(), json);
    }

    /// The dictionary pays where bodies are small: the benchmark's gridX `ping`.
    #[test]
    fn a_small_gridx_body_costs_less_than_half_its_size() {
        let body = br#"{"id":"00000000-0000-4000-8000-00000000002a","time":"2026-12-01T17:53:00.123456Z","specVersion":"1.0","source":"/systems/bench","type":"ping","data":{"message":"bench 42"}}"#;
        let mut packer = Packer::default();
        let (packed, how) = packer.pack(body);
        let packed = packed.into_owned();
        assert!(how == WITH_DICTIONARY && packed.len() < body.len() / 2, "{} of {}", packed.len(), body.len());
        assert_eq!(unpack(1, packed, how).unwrap(), body);
    }
}
