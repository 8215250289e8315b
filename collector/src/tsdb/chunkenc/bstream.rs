//! The bit stream under every chunk encoding: an append-only writer and a reader, most
//! significant bit first, plus the delta-of-delta code that XOR and decimal chunks share
//! for timestamps (and decimal chunks for mantissas). Prometheus keeps the same split
//! (`tsdb/chunkenc/bstream.go`).

/// Append-only bit stream, most significant bit first.
///
/// The last, unfinished 64 bits stay in `acc` inside the writer instead of in the byte
/// vector. The head keeps one writer per series and touches ~10k of them per request:
/// or-ing bits into the vector's last byte was a cache miss per sample (13% of ingest
/// CPU in a profile); now the vector is written once per 8 bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitWriter {
    /// Whole 64-bit words written so far (big-endian, so bytes are in stream order).
    bytes: Vec<u8>,
    /// Pending bits, left-aligned: the top `pending` bits are the stream's tail.
    acc: u64,
    /// Number of valid bits in `acc` (0..=63).
    pending: u8,
}

/// Bytes a writer reserves when it flushes its first word.
const FIRST_CAPACITY: usize = 64;

impl BitWriter {
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write_bits(bit as u64, 1);
    }

    /// Writes the low `n` bits of `v` (n ≤ 64).
    pub(crate) fn write_bits(&mut self, v: u64, n: u8) {
        if n == 0 {
            return;
        }
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        let space = 64 - self.pending;
        if n < space {
            self.acc |= v << (space - n);
            self.pending += n;
        } else {
            // Fill the word, flush it, keep the rest.
            let rest = n - space;
            self.acc |= v >> rest;
            if self.bytes.capacity() == 0 {
                // Room for a chunk's first ~50 samples at once: growing from 8 bytes
                // took four reallocations a chunk, for every series of the head.
                self.bytes.reserve(FIRST_CAPACITY);
            }
            self.bytes.extend_from_slice(&self.acc.to_be_bytes());
            self.acc = if rest == 0 { 0 } else { v << (64 - rest) };
            self.pending = rest;
        }
    }

    pub(crate) fn write_varint(&mut self, v: i64) {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let byte = (u & 0x7f) as u8;
            u >>= 7;
            if u == 0 {
                self.write_bits(byte as u64, 8);
                break;
            }
            self.write_bits((byte | 0x80) as u64, 8);
        }
    }

    /// Length of the stream in bytes (the last one possibly partial).
    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len() + (self.pending as usize).div_ceil(8)
    }

    /// Bits still free in the last byte (0 when it is full or there is none).
    pub(crate) fn free_in_last_byte(&self) -> u8 {
        (8 - self.pending % 8) % 8
    }

    /// The stream as bytes, the last one padded with zero bits.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len());
        out.extend_from_slice(&self.bytes);
        self.push_pending(&mut out);
        out
    }

    /// Like [`BitWriter::to_bytes`], consuming the writer.
    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.bytes);
        self.push_pending(&mut out);
        out
    }

    fn push_pending(&self, out: &mut Vec<u8>) {
        let n = (self.pending as usize).div_ceil(8);
        out.extend_from_slice(&self.acc.to_be_bytes()[..n]);
    }

    /// A writer that goes on after `bytes`, whose last byte has `free` unused low bits.
    pub(crate) fn resume(bytes: &[u8], free: u8) -> Option<BitWriter> {
        if free >= 8 || (free > 0 && bytes.is_empty()) {
            return None;
        }
        let mut w = BitWriter {
            bytes: Vec::with_capacity(bytes.len() + 8),
            acc: 0,
            pending: 0,
        };
        let whole = if free == 0 {
            bytes.len()
        } else {
            bytes.len() - 1
        };
        for &b in &bytes[..whole] {
            w.write_bits(b as u64, 8);
        }
        if free > 0 {
            let used = 8 - free;
            w.write_bits((bytes[whole] >> free) as u64, used);
        }
        Some(w)
    }
}

/// Reads a bit stream written by [`BitWriter`].
///
/// Buffered: up to 64 bits of the stream wait in `buf` (most significant first), and
/// it is refilled eight bytes at a time. Reading samples bit by bit, with a bounds
/// check per bit, was a quarter of a query over a day of samples.
///
/// Invariant: the top `valid` bits of `buf` are the stream bits from bit
/// `next * 8 − valid` on; the bits below them are either zero or the stream bits that
/// follow (so OR-ing the next eight bytes in at `valid` never changes them).
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    /// The next byte of `bytes` not yet in `buf`.
    next: usize,
    buf: u64,
    valid: u32,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> BitReader<'a> {
        BitReader {
            bytes,
            next: 0,
            buf: 0,
            valid: 0,
        }
    }

    /// Bytes not yet read at all (before the first read: all of them).
    pub(crate) fn rest_len(&self) -> usize {
        self.bytes.len() - self.next
    }

    /// Loads whole bytes into `buf` until it holds more than 56 bits or the stream ends.
    #[inline]
    fn refill(&mut self) {
        if let Some(word) = self.bytes.get(self.next..self.next + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            let w = u64::from_be_bytes(w);
            if self.valid < 64 {
                self.buf |= w >> self.valid;
            }
            let add = (64 - self.valid) / 8;
            self.next += add as usize;
            self.valid += add * 8;
        } else {
            while self.valid <= 56 {
                let Some(&b) = self.bytes.get(self.next) else {
                    break;
                };
                self.buf |= (b as u64) << (56 - self.valid);
                self.next += 1;
                self.valid += 8;
            }
        }
    }

    /// The buffer, holding at least the next `n` bits (n ≤ 56) left-aligned unless
    /// the stream ends first; bits past its end read as zero. Nothing is consumed:
    /// [`BitReader::consume`] checks that the bits used were really there.
    #[inline]
    fn peek(&mut self, n: u32) -> u64 {
        if self.valid < n {
            self.refill();
        }
        self.buf
    }

    /// Drops `n` bits (n < 64) that [`BitReader::peek`] showed; `None` past the end.
    #[inline]
    fn consume(&mut self, n: u32) -> Option<()> {
        if n > self.valid {
            return None;
        }
        self.buf <<= n;
        self.valid -= n;
        Some(())
    }

    #[inline]
    pub(crate) fn read_bits(&mut self, n: u8) -> Option<u64> {
        let n = n as u32;
        match n {
            0 => Some(0),
            1..=56 => {
                let v = self.peek(n) >> (64 - n);
                self.consume(n)?;
                Some(v)
            }
            _ => {
                let hi = self.read_bits(32)?;
                let lo = self.read_bits((n - 32).min(32) as u8)?;
                Some((hi << (n - 32).min(32)) | lo)
            }
        }
    }

    #[inline]
    pub(crate) fn read_varint(&mut self) -> Option<i64> {
        let mut u = 0u64;
        let mut shift = 0;
        loop {
            let b = self.read_bits(8)? as u8;
            if shift >= 64 {
                return None;
            }
            u |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// The number of one bits (at most `max` ≤ 8) before the first zero, consumed with
    /// the zero (the zero is not there when `max` ones were read).
    #[inline]
    pub(crate) fn read_ones(&mut self, max: u32) -> Option<u32> {
        let ones = (!self.peek(max)).leading_zeros().min(max);
        self.consume(if ones < max { ones + 1 } else { ones })?;
        Some(ones)
    }
}

/// Bit widths of the three middle buckets of a delta-of-delta code for timestamps.
/// The first is small because real scrapes land a few ms off their interval: ±2 ms of
/// jitter costs 2 + 5 bits instead of Gorilla's 2 + 14.
pub(crate) const TS_WIDTHS: [u8; 3] = [5, 14, 20];

/// Writes a delta-of-delta: `'0'` for zero, `'10'`, `'110'`, `'1110'` followed by
/// `widths[0..3]` bits, else `'1111'` and 64 bits. Shared by timestamps (XOR and decimal
/// chunks) and decimal mantissas, with their own widths.
pub(crate) fn write_dod(w: &mut BitWriter, dod: i64, widths: [u8; 3]) {
    if dod == 0 {
        w.write_bit(false);
        return;
    }
    for (i, &bits) in widths.iter().enumerate() {
        if fits(dod, bits) {
            // i + 1 one-bits then a zero: 0b10, 0b110, 0b1110.
            let prefix = ((1u64 << (i + 2)) - 1) ^ 1;
            w.write_bits(prefix, i as u8 + 2);
            w.write_bits(dod as u64, bits);
            return;
        }
    }
    w.write_bits(0b1111, 4);
    w.write_bits(dod as u64, 64);
}

/// Reads what [`write_dod`] wrote with the same widths.
#[inline]
pub(crate) fn read_dod(r: &mut BitReader, widths: [u8; 3]) -> Option<i64> {
    let ones = r.read_ones(4)? as usize;
    Some(match ones {
        0 => 0,
        1..=3 => sign_extend(r.read_bits(widths[ones - 1])?, widths[ones - 1]),
        _ => r.read_bits(64)? as i64,
    })
}

pub(crate) fn fits(v: i64, bits: u8) -> bool {
    let lo = -(1i64 << (bits - 1)) + 1;
    let hi = 1i64 << (bits - 1);
    v >= lo && v <= hi
}

pub(crate) fn sign_extend(v: u64, bits: u8) -> i64 {
    let v = v as i64;
    if bits == 64 {
        return v;
    }
    // Values above the positive range are negative two's-complement numbers.
    if v > (1i64 << (bits - 1)) {
        v - (1i64 << bits)
    } else {
        v
    }
}
