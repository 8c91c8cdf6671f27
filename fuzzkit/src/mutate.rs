//! The mutators: byte-level operators (bit flips, interesting integers in
//! both byte orders, dictionary tokens, block insert/delete/duplicate,
//! splicing, number rewriting) stacked on a corpus entry.

use crate::rng::Rng;
use crate::runner::Fuzzer;

/// Integers that make parsers take their edge paths: zero, one, signs,
/// powers of two and their neighbours, type bounds.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    4,
    5,
    7,
    8,
    16,
    32,
    64,
    100,
    127,
    128,
    255,
    256,
    1000,
    1024,
    4096,
    32767,
    32768,
    65535,
    65536,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// Bytes worth planting: separators and terminators of the text protocols,
/// high bits, NUL.
const INTERESTING_BYTES: &[u8] = b"\0\n\r \t:\\*$#-+0129\x7f\x80\xff";

impl Fuzzer {
    /// A corpus entry with a few stacked mutations.
    pub(crate) fn mutant(&self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut data = corpus[rng.below(corpus.len())].clone();
        let rounds = 1 + if rng.one_in(4) {
            rng.below(16)
        } else {
            rng.below(3)
        };
        for _ in 0..rounds {
            self.mutate_once(rng, corpus, &mut data);
        }
        data.truncate(self.max_len);
        data
    }

    fn mutate_once(&self, rng: &mut Rng, corpus: &[Vec<u8>], data: &mut Vec<u8>) {
        let len = data.len();
        match rng.below(14) {
            // Flip one bit.
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            // Replace a byte with a random or an interesting one.
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = if rng.one_in(2) {
                    rng.next_u64() as u8
                } else {
                    INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]
                };
            }
            // Overwrite an integer (1, 2, 4 or 8 bytes, either order, maybe
            // nudged by one) with an interesting value.
            2 if len > 0 => {
                let width = [1usize, 2, 4, 8][rng.below(4)].min(len);
                let at = rng.below(len - width + 1);
                let mut v = INTERESTING[rng.below(INTERESTING.len())];
                match rng.below(4) {
                    0 => v = v.wrapping_add(1),
                    1 => v = v.wrapping_sub(1),
                    _ => {}
                }
                let bytes = if rng.one_in(2) {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                let src = if rng.one_in(2) {
                    &bytes[8 - width..]
                } else {
                    &bytes[..width]
                };
                data[at..at + width].copy_from_slice(src);
            }
            // Write a number in decimal (text protocols carry lengths so).
            3 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let text = if rng.one_in(4) {
                    format!("-{v}")
                } else {
                    v.to_string()
                };
                let at = rng.below(len + 1);
                let cut = rng.below(4).min(len - at);
                data.splice(at..at + cut, text.bytes());
            }
            // Plant a dictionary token.
            4 | 5 if !self.dict.is_empty() => {
                let token = &self.dict[rng.below(self.dict.len())];
                let at = rng.below(len + 1);
                if rng.one_in(2) {
                    data.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(len);
                    data.splice(at..end, token.iter().copied());
                }
            }
            // Delete a block.
            6 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                data.drain(at..at + n);
            }
            // Insert random bytes.
            7 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                data.splice(at..at, bytes);
            }
            // Duplicate a block (repeats frames, headers, elements).
            8 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(256));
                let block = data[at..at + n].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, block);
            }
            // Splice in a piece of another corpus entry.
            9 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below(other.len() - from);
                    let at = rng.below(len + 1);
                    let end = if rng.one_in(2) { at } else { len };
                    data.splice(at..end, other[from..from + n].iter().copied());
                }
            }
            // Truncate.
            10 if len > 0 => data.truncate(rng.below(len)),
            // Repeat one byte many times (long lines, deep nesting).
            11 => {
                let at = rng.below(len + 1);
                let b = if len > 0 && rng.one_in(2) {
                    data[rng.below(len)]
                } else {
                    INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]
                };
                let n = 1 + rng.below(512);
                data.splice(at..at, std::iter::repeat_n(b, n));
            }
            // Change a decimal number already in the input (lengths, counts,
            // positions of text formats) to an edge value or a neighbour.
            12 | 13 => {
                let runs = digit_runs(data);
                if runs.is_empty() {
                    data.push(b'0' + rng.below(10) as u8);
                    return;
                }
                let (at, end) = runs[rng.below(runs.len())];
                let old = data[at..end].iter().fold(0u64, |n, &d| {
                    n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                let new = match rng.below(6) {
                    0 => old.wrapping_add(1),
                    1 => old.wrapping_sub(1),
                    2 => old.wrapping_mul(2),
                    3 => old / 2,
                    4 => rng.next_u64() >> rng.below(64),
                    _ => INTERESTING[rng.below(INTERESTING.len())],
                };
                data.splice(at..end, new.to_string().bytes());
            }
            // A mutator that did not apply (empty input, no dict): add a byte.
            _ => data.push(rng.next_u64() as u8),
        }
    }
}

/// `(start, end)` of every run of ASCII digits, at most 256 of them.
fn digit_runs(data: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < data.len() && runs.len() < 256 {
        if data[i].is_ascii_digit() {
            let start = i;
            while i < data.len() && data[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    runs
}
