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
mod tests;
