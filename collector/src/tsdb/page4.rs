//! `page4`: the pages written now. A page3 (`store.rs`) whose timestamp columns are
//! the generation's, stored once at the end of its page file, and whose float values
//! are decimal varint chunks (`chunkenc/dvarint.rs`).
//!
//! ```text
//! pages/B-G.pages := page4* columns4
//! page4    := a page3 whose columns part is empty: uvarint(f) uvarint(0) uvarint(0)
//!             (uvarint(first ref − previous first ref) uvarint(raw) uvarint(stored))*f
//!             zstd( entry2* )*f                    entries sorted by ref
//! columns4 := zstd( columns )                      every column of the generation's pages
//!                                                  (ts_columns.rs); an fchunk's column
//!                                                  number is its number here
//! index value (pages_v2) := u64 LE offset · u32 LE length · 0x04
//!                           · u64 LE columns4 offset · u32 LE its length
//!                           · u32 LE its length before zstd                 (29 bytes)
//! ```
//! An fchunk of float values is `0x01 uvarint(column) chunk`, the chunk a decimal
//! varint values chunk ([`ENC_DECIMAL_VARINT`]) when every value is a short decimal,
//! else XOR at timestamps 0, 1, 2, … as in a page3; histograms are stored whole.
//!
//! Why, measured offline on 6–12 two-hour buckets of the 7-day, 10,000-series bench's
//! pages (`study.rs`; the table is in `bench/RESULTS.md`, "Bytes at rest"), in bytes per
//! sample after zstd: page3 1.074; columns once per generation 1.044 (a page of ~250
//! series from every host held every host's column: 0.034 → 0.003); values as varints
//! or fixed-width packed deltas with a common factor, whichever is shorter, 0.827; zstd
//! level 19 instead of 9, 0.813. Each chunk's form chosen by what the page's zstd is
//! expected to make of it rather than by its length (`dvarint::entropy_cost`): 3.0 %
//! less on eight later buckets (0.831 → 0.806); floats that are no short decimals as
//! Δ or Δ² of their bits (`dvarint::RAW_BITS`), 0.793. Not taken: a zstd dictionary
//! trained on each generation's frames (16 or 64 KiB: 0.5 % less, two buckets) and whole
//! pages instead of frames (1 %), against slower reads of a few series. Day-sized pages,
//! larger frames and packed bits kept out of zstd gained nothing more.
//!
//! A generation is written whole before it is indexed (`write_pages_as`), so its
//! columns are always there for its pages; a reader of a few series reads a page's
//! head, the columns (once per generation, cached with the page parts) and the frames
//! holding them.

use super::{
    read_unpack, Chunk, Head3, Page3, PageWriter, Part, PartKey, SeriesRef, Store, HEAD_READ,
    MAX_RAW_PAGE, PAGE_PART,
};
use crate::tsdb::chunkenc::{dvarint, ChunkView, ENC_DECIMAL_VARINT};
use crate::tsdb::ts_columns;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// zstd level of page4s: 19 takes 1.7 % more off than 9 (0.813 vs 0.827 bytes per
/// sample); written once per bucket in the background, and reading back is as fast
/// whatever the level.
pub(super) const ZSTD_LEVEL: i32 = 19;

/// Length of a page4's index value.
pub(super) const LOC_LEN: usize = 29;

/// The values of `samples` as a chunk of their own: decimal varint values when every
/// value is a short decimal and that is expected to be smaller after the page's zstd
/// ([`dvarint::entropy_cost`]), else XOR at timestamps 0, 1, 2, …
pub(in crate::tsdb) fn values_chunk(samples: &[(i64, f64)]) -> Chunk {
    let indexed = ts_columns::values_only(samples);
    let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
    match dvarint::encode_scored(&values) {
        (cost, data) if cost < dvarint::entropy_cost(&indexed.data) => Chunk {
            min_t: 0,
            max_t: samples.len() as i64 - 1,
            count: samples.len() as u16,
            encoding: ENC_DECIMAL_VARINT,
            data: data.into_boxed_slice(),
        },
        _ => indexed,
    }
}

/// The generation's columns, written after its pages: (bytes before zstd, stored).
pub(super) fn columns_block(w: &mut PageWriter) -> std::io::Result<(usize, Vec<u8>)> {
    let mut raw = Vec::with_capacity(4096);
    w.columns.write_and_clear(&mut raw);
    let z = w.zstd.compress(&raw)?;
    Ok((raw.len(), z))
}

fn le_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

fn le_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

impl Store {
    /// The head of the `page4` at `off` (`len` bytes) of `file`, from the cache or
    /// read and cached; `None` when damaged.
    fn page4_head(&self, key: PartKey, file: &File, off: u64, len: usize) -> Option<Arc<Page3>> {
        if let Some(Part::Page(p)) = self.parts.read().map.get(&key) {
            return Some(p.clone());
        }
        let read = |n: usize| -> Option<Vec<u8>> {
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, off).ok()?;
            Some(buf)
        };
        let first = read(len.min(HEAD_READ))?;
        let head = match Head3::parse(&first, len) {
            Some(h) => h,
            None if first.len() < len => Head3::parse(&read(len)?, len)?,
            None => return None,
        };
        if head.cols_raw != 0 || head.cols_stored != 0 {
            return None;
        }
        let size = head.frames.len() * 32;
        let page = Arc::new(Page3 {
            head,
            cols: Vec::new(),
            spans: Vec::new(),
            decoded: Vec::new(),
        });
        self.parts
            .write()
            .insert(key, Part::Page(page.clone()), size);
        Some(page)
    }

    /// The columns of a page4 file (`stored` bytes at `at`, `raw` once decompressed),
    /// from the cache or read, decompressed and cached; `None` when damaged.
    fn page4_columns(
        &self,
        key: PartKey,
        file: &File,
        at: u64,
        stored: usize,
        raw: usize,
    ) -> Option<Arc<Page3>> {
        if let Some(Part::Page(p)) = self.parts.read().map.get(&key) {
            return Some(p.clone());
        }
        if raw as u64 > MAX_RAW_PAGE || stored as u64 > MAX_RAW_PAGE {
            return None;
        }
        let cols = read_unpack(file, at, stored, raw)?;
        let spans = ts_columns::LazyColumns::spans(&cols)?;
        // Counted as if every column were decoded (8 bytes a timestamp), as page3's.
        let decoded_max: usize = spans.iter().map(|s| s.0 as usize * 8 + 16).sum();
        let size = cols.len() + spans.len() * 16 + decoded_max;
        let decoded = (0..spans.len()).map(|_| Default::default()).collect();
        let page = Arc::new(Page3 {
            head: Head3 {
                cols_raw: raw,
                cols_stored: stored,
                cols_at: 0,
                frames: Vec::new(),
            },
            cols,
            spans,
            decoded,
        });
        self.parts
            .write()
            .insert(key, Part::Page(page.clone()), size);
        Some(page)
    }

    /// Reads the wanted series of one `page4` (its index value `loc`): the head, the
    /// generation's columns, then each frame holding a wanted ref, each decompressed
    /// once (and kept in the cache of decompressed parts). Consumes from `want` the
    /// refs it read; `None` when the page is damaged (what was read before the damage
    /// was passed to `f`).
    pub(super) fn read_page4(
        &self,
        bucket: i64,
        gen: u32,
        loc: &[u8],
        page_last: SeriesRef,
        want: &mut std::iter::Peekable<impl Iterator<Item = SeriesRef>>,
        f: &mut impl FnMut(SeriesRef, &[ChunkView<'_>]),
    ) -> Option<()> {
        let off = le_u64(loc.get(..8)?)?;
        let len = le_u32(loc.get(8..12)?)? as usize;
        let cols_at = le_u64(loc.get(13..21)?)?;
        let cols_stored = le_u32(loc.get(21..25)?)? as usize;
        let cols_raw = le_u32(loc.get(25..29)?)? as usize;
        if want.peek().is_none_or(|w| *w > page_last) {
            return Some(());
        }
        let file = self.open_file(bucket, gen).ok()?;
        let page = self.page4_head((bucket, gen, off, PAGE_PART), &file, off, len)?;
        let cols = self.page4_columns(
            (bucket, gen, cols_at, PAGE_PART),
            &file,
            cols_at,
            cols_stored,
            cols_raw,
        )?;
        self.read_frames(
            (bucket, gen, off),
            &file,
            &page.head,
            &cols,
            page_last,
            want,
            f,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::chunkenc::{ENC_XOR, ENC_XOR_FINAL};

    /// A seconds counter of small steps at two decimals and a gauge that seldom moves
    /// are smaller after zstd as decimal varint chunks than as the XOR or decimal-bits
    /// chunk of the same values.
    #[test]
    fn chunks_are_chosen_by_their_size_after_zstd() {
        let z = |b: &[u8]| zstd::bulk::compress(b, ZSTD_LEVEL).unwrap().len();
        let mut m = 520_229i64;
        let counter: Vec<(i64, f64)> = (0..480)
            .map(|i| {
                m += 3 + (i * 7919 % 10);
                (i * 15_000, m as f64 / 100.0)
            })
            .collect();
        let mut g = 9_000_000i64;
        let seldom: Vec<(i64, f64)> = (0..480)
            .map(|i| {
                if i % 7 == 3 {
                    g += (i % 9 - 4) * 4096;
                }
                (i * 15_000, g as f64)
            })
            .collect();
        for samples in [&counter, &seldom] {
            let other = ts_columns::values_only(samples);
            let chosen = values_chunk(samples);
            assert_eq!(chosen.encoding, ENC_DECIMAL_VARINT);
            assert!(
                z(&chosen.data) < z(&other.data),
                "{} vs {}",
                z(&chosen.data),
                z(&other.data)
            );
        }
        // Floats that are no short decimals: a clock (seconds with noise below the
        // millisecond, as node_time_seconds) and durations drawn at random go as
        // their bits (Δ² of the clock's are small), smaller than XOR after zstd.
        let mut r = crate::tsdb::chunkenc::TestRng(0x9e37_79b9_7f4a_7c15);
        let mut draw = move || (r.bits() >> 11) as f64 / (1u64 << 53) as f64;
        let clock: Vec<(i64, f64)> = (0..480)
            .map(|i| (i, 1.7e9 + i as f64 * 15.0 + draw() * 0.001))
            .collect();
        let noise: Vec<(i64, f64)> = (0..480).map(|i| (i, 0.002 + draw() * 0.048)).collect();
        for samples in [&clock, &noise] {
            let xor = ts_columns::values_only(samples);
            assert!([ENC_XOR, ENC_XOR_FINAL].contains(&xor.encoding));
            let chosen = values_chunk(samples);
            assert_eq!(chosen.encoding, ENC_DECIMAL_VARINT);
            assert!(dvarint::is_raw_bits(&chosen.data));
            assert!(
                z(&chosen.data) < z(&xor.data),
                "{} vs {}",
                z(&chosen.data),
                z(&xor.data)
            );
            let back: Vec<u64> = dvarint::DvarintIter::new(&chosen.data, chosen.count)
                .map(|s| s.1.to_bits())
                .collect();
            let want: Vec<u64> = samples.iter().map(|s| s.1.to_bits()).collect();
            assert_eq!(back, want);
        }
    }
}
