//! Fuzz targets of the compressed V2 streams: the deflate and snappy
//! decoders fed damaged streams in arbitrary chunks under an output bound
//! (what a client controls after IDENTIFY), and a round trip through both
//! directions with arbitrary data, chunking and output room.

use bytes::BytesMut;
use fuzzkit::Fuzzer;
use fuzzkit::arbitrary::Unstructured;

use crate::protocol::v2::compress::{Compressor, Decompressor};
use crate::protocol::v2::identify::Compression;

/// Output room the decoders get per call, as the session's read buffer does.
const ROOM: usize = 4096;
/// Snappy decodes whole chunks, so it may pass the room by one block.
const SNAPPY_SLACK: usize = 65536;

fn compressed(kind: Compression, pieces: &[&[u8]]) -> Vec<u8> {
    let mut c = Compressor::new(kind);
    let mut wire = BytesMut::new();
    for p in pieces {
        // Compressing our own sample data cannot fail.
        c.compress(p, &mut wire).expect("compress a sample");
    }
    wire.to_vec()
}

fn sample_seeds(kind: Compression) -> Vec<Vec<u8>> {
    let text: Vec<u8> = b"PUB topic\n\x00\x00\x00\x05hello "
        .iter()
        .copied()
        .cycle()
        .take(3000)
        .collect();
    let noise: Vec<u8> = (0..2000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    vec![
        compressed(kind, &[b"NOP\n"]),
        compressed(kind, &[&text]),
        compressed(kind, &[b"RDY 1\n", &noise, b"FIN 0123456789abcdef\n"]),
        compressed(kind, &[&[0u8; 70_000]]),
    ]
}

/// Feeds `data` (after a first byte choosing the chunk size) to a fresh
/// decoder, draining its output like the session does, and checks each call
/// respects its output bound and that the loop always makes progress.
/// The outcome is the error (or none) with how far the stream got, in
/// powers of two, so inputs that decode further are kept.
fn decode_garbage(kind: Compression, data: &[u8]) -> (String, u32, u32) {
    let (step, data) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s % 64) + 1, rest),
        None => (1, data),
    };
    let slack = match kind {
        Compression::Snappy => SNAPPY_SLACK,
        Compression::Deflate(_) => 0,
    };
    let mut d = Decompressor::new(kind);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut total = 0usize;
    let mut fed = 0usize;
    let reached = |fed: usize, total: usize| {
        (
            usize::BITS - fed.leading_zeros(),
            usize::BITS - total.leading_zeros(),
        )
    };
    for chunk in data.chunks(step) {
        input.extend_from_slice(chunk);
        fed += chunk.len();
        // Drain what this input decodes to; bounded so a decoder that stops
        // making progress is caught rather than looping.
        for _ in 0..10_000 {
            let (in_before, total_before) = (input.len(), total);
            if let Err(e) = d.decompress(&mut input, &mut out, ROOM) {
                let (f, t) = reached(fed - input.len(), total);
                return (e.to_string(), f, t);
            }
            assert!(
                out.len() <= ROOM + slack,
                "{} bytes past a room of {ROOM}",
                out.len()
            );
            total += out.len();
            out.clear();
            if input.len() == in_before && total == total_before {
                break;
            }
            assert!(total <= 64 << 20, "unbounded expansion");
        }
    }
    let (f, t) = reached(fed - input.len(), total);
    ("ok".into(), f, t)
}

#[test]
fn fuzz_deflate_decoder() {
    let kind = Compression::Deflate(6);
    Fuzzer::new("deflate_decoder")
        .seeds(
            sample_seeds(kind)
                .into_iter()
                .map(|s| [&[7u8][..], &s].concat()),
        )
        .max_len(8192)
        .max_alloc(256 * 1024)
        .run(|d| decode_garbage(kind, d));
}

#[test]
fn fuzz_snappy_decoder() {
    let kind = Compression::Snappy;
    Fuzzer::new("snappy_decoder")
        .seeds(
            sample_seeds(kind)
                .into_iter()
                .map(|s| [&[7u8][..], &s].concat()),
        )
        .dict([&b"\xff\x06\x00\x00sNaPpY"[..], b"\x00", b"\x01", b"\xfe"])
        .max_len(8192)
        .max_alloc(256 * 1024)
        .run(|d| decode_garbage(kind, d));
}

/// decompress(compress(x)) == x for any pieces, chunking, level and output
/// room.
fn round_trip(data: &[u8]) -> u8 {
    let mut u = Unstructured::new(data);
    let kind = match u.int_in_range(0..=10u32) {
        Ok(10) | Err(_) => Compression::Snappy,
        Ok(level) => Compression::Deflate(level),
    };
    let room = u.int_in_range(1..=70_000usize).unwrap_or(ROOM);
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    while pieces.len() < 8 && !u.is_empty() {
        let Ok(len) = u.int_in_range(0..=200usize) else {
            break;
        };
        let mut p = u.bytes(len.min(u.len())).unwrap_or_default().to_vec();
        // Long runs make the compressors take their match paths.
        if u.ratio(1, 3).unwrap_or(false) {
            p = p.repeat(u.int_in_range(2..=300).unwrap_or(2));
        }
        pieces.push(p);
    }
    let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    let wire = compressed(kind, &refs);
    let mut d = Decompressor::new(kind);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut got = Vec::new();
    for chunk in fuzzkit::chunks(&wire, &mut u) {
        input.extend_from_slice(chunk);
        loop {
            let have = (input.len(), got.len());
            d.decompress(&mut input, &mut out, room)
                .unwrap_or_else(|e| panic!("own stream rejected: {e}"));
            got.extend_from_slice(&out.split());
            if (input.len(), got.len()) == have {
                break;
            }
        }
    }
    assert!(input.is_empty(), "{} compressed bytes left", input.len());
    assert_eq!(got, pieces.concat(), "{kind:?}");
    match kind {
        Compression::Snappy => 10,
        Compression::Deflate(l) => l as u8,
    }
}

#[test]
fn fuzz_compress_round_trip() {
    Fuzzer::new("compress_round_trip")
        .seed([3u8; 64])
        .seed((0..=255u8).cycle().take(600).collect::<Vec<_>>())
        .max_len(2048)
        .run(round_trip);
}
