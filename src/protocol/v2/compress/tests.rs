//! Tests of `compress`: deflate and snappy streams, incremental, round-tripped and against their limits.

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
