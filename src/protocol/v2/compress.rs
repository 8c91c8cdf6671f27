//! Stream compression negotiated by IDENTIFY, as pure incremental buffer
//! transforms (no IO): raw deflate (RFC 1951, what Go's `compress/flate`
//! speaks) through flate2, and the snappy framing format (what
//! `github.com/golang/snappy`'s `NewReader`/`NewWriter` speak) built on the
//! `snap` crate's block codec. Both directions flush at the points the
//! session chooses, so every frame it sends can be decoded by the client
//! straight away. Decompression is bounded: it never grows the output past
//! what the caller allows, so a small compressed input cannot expand into an
//! unbounded buffer.

use bytes::{Buf, BufMut, BytesMut};
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use super::identify::Compression;

/// A compressed stream that cannot be decoded, or an encoder failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressError {
    #[error("deflate: {0}")]
    Deflate(String),
    #[error("snappy: {0}")]
    Snappy(String),
}

/// Largest uncompressed block of the snappy framing format.
const SNAPPY_MAX_BLOCK: usize = 65536;
/// The stream identifier chunk every snappy framed stream starts with.
const SNAPPY_STREAM_ID: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// Compresses outgoing bytes.
pub enum Compressor {
    /// Raw deflate; each `compress` call ends with a sync flush, like
    /// nsqd's `flate.Writer.Flush()` after every flush of its buffer.
    Deflate(Box<Compress>),
    /// Snappy framing; each call emits complete chunks.
    Snappy(Box<SnappyEncoder>),
}

impl Compressor {
    pub fn new(kind: Compression) -> Self {
        match kind {
            Compression::Deflate(level) => Compressor::Deflate(Box::new(Compress::new(
                flate2::Compression::new(level.min(9)),
                false,
            ))),
            Compression::Snappy => Compressor::Snappy(Box::new(SnappyEncoder::new())),
        }
    }

    /// Compresses all of `input`, appending to `out` everything the peer
    /// needs to decode it.
    pub fn compress(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), CompressError> {
        if input.is_empty() {
            return Ok(());
        }
        match self {
            Compressor::Deflate(c) => deflate(c, input, out),
            Compressor::Snappy(s) => s.encode(input, out),
        }
    }
}

/// Output room for a call made while the compressor holds back output.
const DEFLATE_DRAIN_ROOM: usize = 32 * 1024;

fn deflate(c: &mut Compress, input: &[u8], out: &mut BytesMut) -> Result<(), CompressError> {
    let mut consumed = 0;
    // Whether the last call filled all its output room. miniz_oxide then
    // holds back the rest, and its next call only hands that over, with
    // room to spare, without compressing or flushing anything; so room to
    // spare means the sync flush is done only for a call made with nothing
    // held back. (If that flush had in fact been done, the extra call adds
    // one more empty stored block, which decoders skip.)
    let mut held_back = false;
    loop {
        let start = out.len();
        let room = if held_back {
            DEFLATE_DRAIN_ROOM
        } else {
            (input.len() - consumed) / 2 + 64
        };
        out.resize(start + room, 0);
        let (in_before, out_before) = (c.total_in(), c.total_out());
        let res = c.compress(&input[consumed..], &mut out[start..], FlushCompress::Sync);
        let used_in = (c.total_in() - in_before) as usize;
        let produced = (c.total_out() - out_before) as usize;
        out.truncate(start + produced);
        res.map_err(|e| CompressError::Deflate(e.to_string()))?;
        consumed += used_in;
        let filled = produced == room;
        if consumed == input.len() && !filled && !held_back {
            return Ok(());
        }
        held_back = filled;
        if used_in == 0 && produced == 0 {
            return Err(CompressError::Deflate("compressor made no progress".into()));
        }
    }
}

/// Decompresses incoming bytes.
pub enum Decompressor {
    /// Raw deflate.
    Deflate(Box<Inflate>),
    /// Snappy framing.
    Snappy(SnappyDecoder),
}

/// A raw deflate decoder that knows whether the client ended its stream.
pub struct Inflate {
    /// flate2's streaming state.
    inner: Decompress,
    /// Set once the final block has been seen; more input is then an error.
    ended: bool,
}

impl Decompressor {
    pub fn new(kind: Compression) -> Self {
        match kind {
            Compression::Deflate(_) => Decompressor::Deflate(Box::new(Inflate {
                inner: Decompress::new(false),
                ended: false,
            })),
            Compression::Snappy => Decompressor::Snappy(SnappyDecoder::new()),
        }
    }

    /// Decodes from the front of `input` (removing what it used) into `out`
    /// until `input` is exhausted or `out` holds `max_out` bytes. Snappy
    /// decodes whole chunks, so it may pass `max_out` by less than one
    /// 64 KiB chunk.
    pub fn decompress(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
        max_out: usize,
    ) -> Result<(), CompressError> {
        match self {
            Decompressor::Deflate(d) => d.decode(input, out, max_out),
            Decompressor::Snappy(s) => s.decode(input, out, max_out),
        }
    }
}

impl Inflate {
    fn decode(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
        max_out: usize,
    ) -> Result<(), CompressError> {
        // Keep going even once `input` is empty: when the output room was
        // smaller than what the input decodes to, the decoder holds the rest
        // internally and must be drained without new input.
        while out.len() < max_out {
            if self.ended {
                if input.is_empty() {
                    break;
                }
                return Err(CompressError::Deflate("data after end of stream".into()));
            }
            let start = out.len();
            let room = (max_out - start).min(64 * 1024);
            out.resize(start + room, 0);
            let (in_before, out_before) = (self.inner.total_in(), self.inner.total_out());
            let res = self
                .inner
                .decompress(input, &mut out[start..], FlushDecompress::None);
            let used_in = (self.inner.total_in() - in_before) as usize;
            let produced = (self.inner.total_out() - out_before) as usize;
            out.truncate(start + produced);
            input.advance(used_in);
            match res {
                Ok(Status::StreamEnd) => self.ended = true,
                Ok(_) => {}
                Err(e) => return Err(CompressError::Deflate(e.to_string())),
            }
            if used_in == 0 && produced == 0 {
                // Needs more input than we have (a partial block header).
                break;
            }
        }
        Ok(())
    }
}

/// Snappy framing-format encoder.
pub struct SnappyEncoder {
    /// Block compressor, reusing its hash table between blocks.
    raw: snap::raw::Encoder,
    /// Whether the stream identifier has been written.
    started: bool,
    /// Scratch for one compressed block.
    scratch: Vec<u8>,
}

impl SnappyEncoder {
    fn new() -> Self {
        SnappyEncoder {
            raw: snap::raw::Encoder::new(),
            started: false,
            scratch: Vec::new(),
        }
    }

    fn encode(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), CompressError> {
        if !self.started {
            out.extend_from_slice(SNAPPY_STREAM_ID);
            self.started = true;
        }
        for block in input.chunks(SNAPPY_MAX_BLOCK) {
            let crc = masked_crc32c(block);
            self.scratch
                .resize(snap::raw::max_compress_len(block.len()), 0);
            let n = self
                .raw
                .compress(block, &mut self.scratch)
                .map_err(|e| CompressError::Snappy(e.to_string()))?;
            // Like golang/snappy: keep the compressed form only if it saves
            // at least an eighth.
            let (kind, data) = if n < block.len() - block.len() / 8 {
                (0x00u8, &self.scratch[..n])
            } else {
                (0x01u8, block)
            };
            let len = data.len() + 4;
            out.reserve(4 + len);
            out.put_u8(kind);
            out.put_slice(&(len as u32).to_le_bytes()[..3]);
            out.put_u32_le(crc);
            out.put_slice(data);
        }
        Ok(())
    }
}

/// Snappy framing-format decoder.
pub struct SnappyDecoder {
    /// Block decompressor.
    raw: snap::raw::Decoder,
    /// The stream must start with the identifier chunk.
    seen_identifier: bool,
}

impl SnappyDecoder {
    fn new() -> Self {
        SnappyDecoder {
            raw: snap::raw::Decoder::new(),
            seen_identifier: false,
        }
    }

    fn decode(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
        max_out: usize,
    ) -> Result<(), CompressError> {
        let bad = |s: &str| CompressError::Snappy(s.to_string());
        while out.len() < max_out && input.len() >= 4 {
            let kind = input[0];
            let len =
                usize::from(input[1]) | usize::from(input[2]) << 8 | usize::from(input[3]) << 16;
            // Longest legal chunk: a checksum plus a 64 KiB block that did not
            // compress (compressed chunks are kept only when smaller).
            if len > 4 + snap::raw::max_compress_len(SNAPPY_MAX_BLOCK) {
                return Err(bad("chunk too long"));
            }
            if input.len() < 4 + len {
                break;
            }
            let chunk = &input[4..4 + len];
            match kind {
                0xff => {
                    if chunk != b"sNaPpY" {
                        return Err(bad("bad stream identifier"));
                    }
                    self.seen_identifier = true;
                }
                _ if !self.seen_identifier => return Err(bad("missing stream identifier")),
                0x00 | 0x01 => {
                    if len < 4 {
                        return Err(bad("chunk too short"));
                    }
                    let crc = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    let data = &chunk[4..];
                    let start = out.len();
                    if kind == 0x00 {
                        let n = snap::raw::decompress_len(data)
                            .map_err(|e| CompressError::Snappy(e.to_string()))?;
                        if n > SNAPPY_MAX_BLOCK {
                            return Err(bad("block too large"));
                        }
                        out.resize(start + n, 0);
                        if let Err(e) = self.raw.decompress(data, &mut out[start..]) {
                            out.truncate(start);
                            return Err(CompressError::Snappy(e.to_string()));
                        }
                    } else {
                        if data.len() > SNAPPY_MAX_BLOCK {
                            return Err(bad("block too large"));
                        }
                        out.extend_from_slice(data);
                    }
                    if masked_crc32c(&out[start..]) != crc {
                        out.truncate(start);
                        return Err(bad("checksum mismatch"));
                    }
                }
                0x02..=0x7f => return Err(bad("reserved unskippable chunk")),
                _ => {} // 0x80..=0xfe: skippable padding.
            }
            input.advance(4 + len);
        }
        Ok(())
    }
}

/// CRC-32C (Castagnoli) table, built at compile time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0x82f6_3b78 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC32C_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// The framing format's masked checksum.
fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial.
        (0..n)
            .map(|i| ((i * 7) % 251) as u8 ^ ((i / 100) as u8))
            .collect()
    }

    #[test]
    fn crc32c_known_vector() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    fn roundtrip(kind: Compression, pieces: &[Vec<u8>]) {
        let mut c = Compressor::new(kind);
        let mut d = Decompressor::new(kind);
        let mut wire = BytesMut::new();
        let mut plain = BytesMut::new();
        let mut expected = Vec::new();
        for p in pieces {
            c.compress(p, &mut wire).unwrap();
            expected.extend_from_slice(p);
            // Everything sent so far must decode now (the flush guarantee),
            // even fed one byte at a time.
            let mut input = BytesMut::new();
            for b in wire.split().iter() {
                input.put_u8(*b);
                d.decompress(&mut input, &mut plain, usize::MAX).unwrap();
            }
            assert!(input.is_empty());
            assert_eq!(&plain[..], &expected[..]);
        }
    }

    #[test]
    fn deflate_roundtrip_incremental() {
        for level in [0, 1, 6, 9] {
            roundtrip(
                Compression::Deflate(level),
                &[
                    b"OK".to_vec(),
                    sample(100_000),
                    vec![],
                    b"x".to_vec(),
                    sample(70_000),
                ],
            );
        }
    }

    #[test]
    fn snappy_roundtrip_incremental() {
        roundtrip(
            Compression::Snappy,
            &[
                b"OK".to_vec(),
                sample(200_000),
                vec![],
                b"y".to_vec(),
                (0..70_000)
                    .map(|i| ((i * 2654435761u64) >> 13) as u8)
                    .collect(),
            ],
        );
    }

    /// Every `compress` must end with a finished sync flush (the empty
    /// stored block `00 00 ff ff`), or the client cannot decode the end of
    /// what was sent until something else is flushed, maybe a heartbeat
    /// 30 s later. These deterministic runs of mixed pieces once ended
    /// without it: at level 1, a 117377-byte piece of noise after 208 KB
    /// of other pieces left its last 863 bytes behind, because the call that
    /// took the last input filled its room and the call that drained the
    /// rest was taken for the finished flush.
    #[test]
    fn deflate_every_compress_ends_with_a_finished_sync_flush() {
        let mut x: u64 = 0x1234_5678;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for run in 0..24u32 {
            let level = run % 10;
            let mut c = Compressor::new(Compression::Deflate(level));
            let mut d = Decompressor::new(Compression::Deflate(level));
            let mut plain = BytesMut::new();
            for piece in 0..6 {
                let size = match rnd() % 4 {
                    0 => (rnd() % 100) as usize + 1,
                    1 => (rnd() % 20_000) as usize + 1,
                    2 => (rnd() % 300_000) as usize + 1,
                    _ => 65536 * ((rnd() % 4) as usize + 1) + (rnd() % 3) as usize,
                };
                let kind = rnd() % 3;
                let input: Vec<u8> = (0..size)
                    .map(|i| match kind {
                        0 => rnd() as u8,
                        1 => (i % 61) as u8,
                        _ if rnd() % 8 == 0 => rnd() as u8,
                        _ => b'a',
                    })
                    .collect();
                let mut wire = BytesMut::new();
                c.compress(&input, &mut wire).unwrap();
                assert!(
                    wire.ends_with(&[0, 0, 0xff, 0xff]),
                    "run {run} piece {piece}: no sync marker after {size} bytes (kind {kind}, level {level})"
                );
                d.decompress(&mut wire, &mut plain, usize::MAX).unwrap();
                assert!(wire.is_empty());
                assert!(
                    plain[..] == input[..],
                    "run {run} piece {piece}: decoded {} of {size}",
                    plain.len()
                );
                plain.clear();
            }
        }
    }

    #[test]
    fn deflate_output_reads_with_standard_decoder() {
        let mut c = Compressor::new(Compression::Deflate(6));
        let mut wire = BytesMut::new();
        c.compress(b"hello ", &mut wire).unwrap();
        c.compress(&sample(50_000), &mut wire).unwrap();
        let mut dec = flate2::read::DeflateDecoder::new(&wire[..]);
        let mut got = vec![0u8; 6 + 50_000];
        dec.read_exact(&mut got).unwrap();
        assert_eq!(&got[..6], b"hello ");
        assert_eq!(&got[6..], &sample(50_000)[..]);
    }

    #[test]
    fn standard_deflate_encoder_output_decodes() {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(3));
        enc.write_all(&sample(90_000)).unwrap();
        let wire = enc.finish().unwrap();
        let mut d = Decompressor::new(Compression::Deflate(3));
        let mut input = BytesMut::from(&wire[..]);
        let mut out = BytesMut::new();
        d.decompress(&mut input, &mut out, usize::MAX).unwrap();
        assert_eq!(&out[..], &sample(90_000)[..]);
        // After the final block, more data is an error.
        let mut more = BytesMut::from(&b"junk"[..]);
        assert!(d.decompress(&mut more, &mut out, usize::MAX).is_err());
    }

    #[test]
    fn snappy_output_reads_with_standard_decoder() {
        let mut c = Compressor::new(Compression::Snappy);
        let mut wire = BytesMut::new();
        c.compress(b"OK", &mut wire).unwrap();
        c.compress(&sample(150_000), &mut wire).unwrap();
        let mut got = Vec::new();
        snap::read::FrameDecoder::new(&wire[..])
            .read_to_end(&mut got)
            .unwrap();
        let mut expected = b"OK".to_vec();
        expected.extend_from_slice(&sample(150_000));
        assert_eq!(got, expected);
    }

    #[test]
    fn standard_snappy_encoder_output_decodes() {
        let mut enc = snap::write::FrameEncoder::new(Vec::new());
        enc.write_all(&sample(150_000)).unwrap();
        enc.flush().unwrap();
        enc.write_all(b"tail").unwrap();
        let wire = enc.into_inner().unwrap();
        let mut d = Decompressor::new(Compression::Snappy);
        let mut input = BytesMut::from(&wire[..]);
        let mut out = BytesMut::new();
        d.decompress(&mut input, &mut out, usize::MAX).unwrap();
        let mut expected = sample(150_000);
        expected.extend_from_slice(b"tail");
        assert_eq!(&out[..], &expected[..]);
    }

    #[test]
    fn decompression_is_bounded() {
        // 1 MiB of zeros compresses to about 1 KiB.
        let zeros = vec![0u8; 1 << 20];
        for kind in [Compression::Deflate(6), Compression::Snappy] {
            let mut c = Compressor::new(kind);
            let mut wire = BytesMut::new();
            c.compress(&zeros, &mut wire).unwrap();
            let mut d = Decompressor::new(kind);
            let mut out = BytesMut::new();
            d.decompress(&mut wire, &mut out, 10_000).unwrap();
            assert!(
                out.len() >= 10_000 && out.len() < 10_000 + 65_536,
                "{}",
                out.len()
            );
            assert!(!wire.is_empty(), "the rest stays compressed");
            out.clear();
            d.decompress(&mut wire, &mut out, usize::MAX).unwrap();
        }
    }

    #[test]
    fn bounded_output_drains_without_more_input() {
        // All input is consumed long before all output is produced: the
        // rest must come out of the decoder on later calls with no input.
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 7) as u8).collect();
        for kind in [Compression::Deflate(6), Compression::Snappy] {
            let mut c = Compressor::new(kind);
            let mut wire = BytesMut::new();
            c.compress(&data, &mut wire).unwrap();
            let mut d = Decompressor::new(kind);
            let mut out = BytesMut::new();
            let mut got = Vec::new();
            for _ in 0..1000 {
                d.decompress(&mut wire, &mut out, 1000).unwrap();
                got.extend_from_slice(&out.split());
                if got.len() == data.len() {
                    break;
                }
            }
            assert!(wire.is_empty());
            assert_eq!(got.len(), data.len(), "{kind:?}");
            assert_eq!(got, data);
        }
    }

    #[test]
    fn corrupt_snappy_is_an_error() {
        let mut d = Decompressor::new(Compression::Snappy);
        let mut out = BytesMut::new();
        let mut input = BytesMut::from(&b"\x00\x05\x00\x00abcde"[..]);
        assert!(
            d.decompress(&mut input, &mut out, usize::MAX).is_err(),
            "no identifier"
        );
        let mut c = Compressor::new(Compression::Snappy);
        let mut wire = BytesMut::new();
        c.compress(b"hello world", &mut wire).unwrap();
        let last = wire.len() - 1;
        wire[last] ^= 0xff;
        let mut d = Decompressor::new(Compression::Snappy);
        assert!(
            d.decompress(&mut wire, &mut out, usize::MAX).is_err(),
            "checksum"
        );
        let mut d = Decompressor::new(Compression::Snappy);
        let mut input = BytesMut::from(&b"\xff\x06\x00\x00sNaPpY\x00\xff\xff\xff"[..]);
        assert!(
            d.decompress(&mut input, &mut out, usize::MAX).is_err(),
            "huge chunk"
        );
    }

    #[test]
    fn corrupt_deflate_is_an_error() {
        let mut d = Decompressor::new(Compression::Deflate(6));
        let mut out = BytesMut::new();
        let mut input = BytesMut::from(&b"\xff\xff\xff\xff\xff\xff"[..]);
        assert!(d.decompress(&mut input, &mut out, usize::MAX).is_err());
    }
}
