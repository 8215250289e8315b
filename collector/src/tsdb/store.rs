//! Everything the TSDB persists besides the head: sled for metadata and the pages of
//! earlier versions, plain page files for the pages written now, behind one narrow type.
//!
//! Three sled trees; keys are big-endian so sled's order is time and ref order:
//!
//! ```text
//! pages_v2    i64 bucket ⊕ sign · u32 gen · u32 last_ref → u64 LE offset · u32 LE length
//!                                                          of its page in the page file,
//!                                                          then 0x03 for a page3 (absent:
//!                                                          a page2 of an earlier version),
//!                                                          or 0x04 and where the columns
//!                                                          lie for a page4 (page4.rs)
//! pages       i64 bucket ⊕ sign · u32 gen · u32 last_ref → page    (earlier versions; read only)
//! meta        "persisted_until"                         → i64 LE
//!             "next_gen"                                → u32 LE
//!             "gen" · i64 bucket ⊕ sign · u32 gen         → refs (a complete generation)
//!
//! refs       := 0x01 snappy( uvarint(ref − previous ref)* )   the series in its pages
//!             | ""                                            written before refs were kept
//!
//! pages/B-G.pages := page4* columns4 | page3* | page2*    one file per bucket B (ms) and
//!                                             generation G; page4 is written now (page4.rs)
//! page3      := uvarint(f) uvarint(raw) uvarint(stored)      f frames; the columns part
//!               (uvarint(first ref − previous first ref) uvarint(raw) uvarint(stored))*f
//!               zstd( columns ) zstd( entry2* )*f           entries sorted by ref
//! page2      := uvarint(raw length) zstd( columns entry2* )   (earlier versions; read only)
//! columns    := the shared timestamp columns of the page (ts_columns.rs)
//! entry2     := uvarint(ref) uvarint(k) fchunk*k
//! fchunk     := 0x00 chunk                         a chunk as it is (native histograms)
//!             | 0x01 uvarint(column) chunk         float values at t = 0, 1, 2, …; the
//!                                                  timestamps are column `column`; a
//!                                                  decimal values chunk (no timestamp
//!                                                  bits) or an XOR chunk
//!
//! page       := uvarint(n) entry*          entries sorted by ref (earlier versions)
//! entry      := uvarint(ref) uvarint(k) chunk*k          (chunk encoding in chunkenc.rs)
//! ```
//! A page holds the chunks of many series (about [`PAGE_BYTES`] before compression).
//! The `last_ref` in the key lets a reader seek straight to the page that holds a given
//! series. A page3 is compressed in frames of about [`FRAME_BYTES`] of entries, each
//! on its own, with the first ref of every frame in the page's head: a reader of a few
//! series reads the head, the columns and the frames holding them, and decompresses
//! only those (refs are spread over the head's shards by label hash, so the series of
//! one host lie in as many pages as it has series: a page2 decompressed whole cost
//! 128 KiB of zstd per series per bucket). In a page2 (and the sled `page` of earlier
//! versions), a directory of where each series' entry starts (built the first time the
//! page is read, kept in memory: [`PageDirs`]) lets it jump to the entry.
//!
//! Pages are written as the checkpoint writes chunks (`checkpoint.rs`): the chunks of a
//! series in a bucket joined into one, their timestamps stored once per page as a column
//! shared by every series scraped at the same instants, the values alone per series
//! (decimal values chunks carry no timestamp bits at all), the whole page zstd-compressed.
//!
//! Why page files and not sled values: measured on 2,000 node_exporter-like series × 24 h
//! (`bench/run-storage`, `bench/RESULTS.md` "Bytes at rest"), sled stored each bucket's
//! pages as one ~1 MB blob per leaf node and kept about half as much again in its log
//! (superseded inline versions of the growing leaf): 0.50 bytes per sample of log next
//! to 1.01 of blobs. Pages are immutable and written once per bucket, so a plain file
//! costs exactly its bytes. A persist writes `B-G.pages.tmp`, fsyncs it, renames it to
//! `B-G.pages`, fsyncs the directory, indexes its pages in `pages_v2`, and only then
//! (compact.rs) marks the generation complete in `meta`; start-up (`catalog`) deletes
//! index entries and files of generations not marked complete.
//!
//! Generations are numbered across both formats, so a `(bucket, gen)` has its pages in
//! exactly one of them; data dirs of earlier versions keep their sled `pages` (read as
//! before) until retention deletes them.

use super::checkpoint::{merge_for_file, FileChunk};
use super::chunkenc::{decimal, Chunk, ChunkView, ENC_DECIMAL_VALUES, ENC_HISTOGRAM};
use super::labels::{get_uvarint, put_uvarint};
use super::ts_columns::{self, ColumnTable};
use super::SeriesRef;
use parking_lot::RwLock;

#[path = "page4.rs"]
pub(super) mod page4;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A set of refs as a bitmap: refs are dense (slot × shards + shard), and series GC
/// fills it from every generation's list, up to a million refs times hundreds of
/// buckets, where a hash set would spend seconds hashing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RefSet(Vec<u64>);

impl RefSet {
    /// Adds `r`.
    pub fn insert(&mut self, r: SeriesRef) {
        let (word, bit) = (r as usize / 64, r % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    /// True when `r` was added.
    pub fn contains(&self, r: SeriesRef) -> bool {
        self.0
            .get(r as usize / 64)
            .is_some_and(|w| w & (1 << (r % 64)) != 0)
    }

    /// How many refs were added.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// True when none was added.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }
}

/// First byte of a generation mark that lists its refs.
const REFS_V1: u8 = 1;

/// Target size of one page before compression.
pub const PAGE_BYTES: usize = 128 * 1024;

/// Pages written between two flushes while persisting a bucket.
pub const FLUSH_EVERY_PAGES: usize = 64;

/// zstd level of pages: as the checkpoint's (written once per bucket, in the
/// background; reading back is as fast whatever the level).
const ZSTD_LEVEL: i32 = 9;

/// Largest page a reader decompresses (a corrupt length cannot make it allocate more).
const MAX_RAW_PAGE: u64 = 64 << 20;

/// Target size of one frame of a page3 before compression.
pub const FRAME_BYTES: usize = 8 * 1024;

/// How much bigger (%) a page3 in frames may be than in one frame.
const FRAME_SLACK_PCT: usize = 3;

/// Last byte of the index value of a page3.
const FMT_PAGE3: u8 = 3;

/// Byte 12 of the index value of a page4 (see `page4.rs`).
const FMT_PAGE4: u8 = 4;

/// The format of a page2 (its index value has no format byte); only written by tests.
const FMT_PAGE2: u8 = 2;

/// Bytes read first from a page3 to find its head (a longer head is read whole).
const HEAD_READ: usize = 512;

/// `fchunk` tag of a chunk stored as it is.
const FCHUNK_WHOLE: u8 = 0;
/// `fchunk` tag of a chunk stored as column number and values.
const FCHUNK_SPLIT: u8 = 1;

/// Most directory entries [`PageDirs`] keeps (8 bytes each: 32 MiB).
const PAGE_DIR_ENTRIES: usize = 4 << 20;

/// Per page (by key), where each series' entry starts: `(ref, byte offset)` sorted by
/// ref. Pages never change once written (a persist writes a new generation; retention
/// deletes whole buckets), so an entry stays true until its bucket is deleted.
///
/// Stepping over the chunks of other series to reach a wanted one was 14% of a query
/// reading 192 of 10,000 series: every chunk header before it parsed, every page
/// touched up to it. Bounded: when full, it starts over.
#[derive(Default)]
pub struct PageDirs {
    map: HashMap<[u8; 16], Arc<[(SeriesRef, u32)]>>,
    entries: usize,
}

/// Key of a decompressed part of a `page3`: bucket, generation, the page's offset in
/// its file, and [`PAGE_PART`] for its head and columns or the frame's number.
type PartKey = (i64, u32, u64, u32);

/// The part number of a page's head and columns in a [`PartKey`].
const PAGE_PART: u32 = u32::MAX;

/// A `page3`'s head and its timestamp columns, decompressed, with where each column
/// lies (the scan of [`ts_columns::LazyColumns::parse`] done once) and each column
/// decoded the first time a read needs it (a query over many series decoded the same
/// columns again at every run: 3 % of its time).
struct Page3 {
    head: Head3,
    cols: Vec<u8>,
    spans: Vec<(u64, u32, u32)>,
    decoded: Vec<std::sync::OnceLock<Option<Box<[i64]>>>>,
}

impl Page3 {
    /// Column `i`, decoded; `None` when absent or damaged.
    fn column(&self, i: usize) -> Option<&[i64]> {
        let &(n, a, b) = self.spans.get(i)?;
        self.decoded
            .get(i)?
            .get_or_init(|| {
                let bytes = self.cols.get(a as usize..b as usize)?;
                ts_columns::decode_span(bytes, n).map(Vec::into_boxed_slice)
            })
            .as_deref()
    }
}

enum Part {
    Page(Arc<Page3>),
    Frame(Arc<Frame>),
}

/// A decompressed frame of a page3/page4 and its directory: where each series' entry
/// starts. Built in the one pass after decompressing (the frame stays cached), so a
/// read finds a series by binary search instead of walking the entries before it: a
/// page4 is usually one whole frame (zstd finds more repeats across 128 KiB), and the
/// walk was a tenth of a selective query over persisted data.
struct Frame {
    bytes: Vec<u8>,
    /// `(ref, offset of its entry in bytes)`, sorted by ref as the entries are.
    dir: Vec<(SeriesRef, u32)>,
}

impl Frame {
    /// The frame and its directory; `None` when an entry is damaged.
    fn new(bytes: Vec<u8>) -> Option<Frame> {
        let mut dir = Vec::new();
        let mut buf: &[u8] = &bytes;
        while !buf.is_empty() {
            let at = (bytes.len() - buf.len()) as u32;
            let r = get_uvarint(&mut buf)? as SeriesRef;
            let k = get_uvarint(&mut buf)?;
            for _ in 0..k {
                next_fchunk(&mut buf, None)?;
            }
            dir.push((r, at));
        }
        Some(Frame { bytes, dir })
    }

    /// The entry of series `r` (from its ref on), if the frame holds it.
    fn entry(&self, r: SeriesRef) -> Option<&[u8]> {
        let i = self.dir.binary_search_by_key(&r, |e| e.0).ok()?;
        self.bytes.get(self.dir[i].1 as usize..)
    }
}

/// Parts of `page3`s read and decompressed lately, so that a repeated query over the
/// same persisted range does not read and zstd-decompress them again (pages never
/// change once written; the sled values of earlier versions lived in sled's cache).
/// Measured with callgrind on a selective `rate` over 22 h of persisted data
/// (`bench/RESULTS.md`, query section): zstd, the columns' scan and the read buffers
/// were 45% of its instructions. Bounded by bytes (a part's decompressed length plus
/// its bookkeeping), the oldest inserted out first; a part larger than an eighth of
/// the budget is not kept.
struct PartCache {
    map: HashMap<PartKey, Part>,
    order: std::collections::VecDeque<(PartKey, usize)>,
    bytes: usize,
    budget: usize,
}

/// Bytes counted for a cached part besides its data (map entry, `Arc`, queue entry).
const PART_OVERHEAD: usize = 96;

impl PartCache {
    fn new(budget: usize) -> PartCache {
        PartCache {
            map: HashMap::new(),
            order: std::collections::VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    fn insert(&mut self, k: PartKey, part: Part, size: usize) {
        let size = size + PART_OVERHEAD;
        if size > self.budget / 8 || self.map.contains_key(&k) {
            return;
        }
        while self.bytes + size > self.budget {
            let Some((old, n)) = self.order.pop_front() else {
                break;
            };
            self.map.remove(&old);
            self.bytes -= n;
        }
        self.map.insert(k, part);
        self.order.push_back((k, size));
        self.bytes += size;
    }

    /// Forgets the parts of buckets older than `before`.
    fn forget_before(&mut self, before: i64) {
        self.map.retain(|k, _| k.0 >= before);
        self.order.retain(|(k, _)| k.0 >= before);
        self.bytes = self.order.iter().map(|e| e.1).sum();
    }
}

/// The sled database of one TSDB.
pub struct Store {
    pub db: sled::Db,
    /// Where each page of the current format (`page2`) lies in its page file.
    pub pages2: sled::Tree,
    /// The directory of the page files.
    pages_dir: PathBuf,
    /// Page files opened so far, by (bucket, generation).
    files: RwLock<HashMap<(i64, u32), Arc<File>>>,
    /// Pages written by earlier versions (`page`); read only, emptied by retention.
    pub pages: sled::Tree,
    pub meta: sled::Tree,
    /// Directories of the pages read so far.
    dirs: RwLock<PageDirs>,
    /// Decompressed parts of page3s read lately.
    parts: RwLock<PartCache>,
}

/// Where each entry of `page` starts, in ref order; stops at a damaged entry.
fn page_dir(page: &[u8]) -> Vec<(SeriesRef, u32)> {
    let mut buf: &[u8] = page;
    let n = get_uvarint(&mut buf).unwrap_or(0);
    let mut out = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let off = (page.len() - buf.len()) as u32;
        let Some(r) = get_uvarint(&mut buf) else {
            break;
        };
        let Some(k) = get_uvarint(&mut buf) else {
            break;
        };
        out.push((r as SeriesRef, off));
        for _ in 0..k {
            if Chunk::view(&mut buf).is_none() {
                return out;
            }
        }
    }
    out
}

/// Where each entry of a `page2`'s `raw` bytes starts, entries starting at `from`;
/// stops at a damaged entry.
fn page2_dir(raw: &[u8], from: usize) -> Vec<(SeriesRef, u32)> {
    let mut buf: &[u8] = raw.get(from..).unwrap_or(&[]);
    let mut out = Vec::new();
    while !buf.is_empty() {
        let off = (raw.len() - buf.len()) as u32;
        let Some(r) = get_uvarint(&mut buf) else {
            break;
        };
        let Some(k) = get_uvarint(&mut buf) else {
            break;
        };
        out.push((r as SeriesRef, off));
        for _ in 0..k {
            if next_fchunk(&mut buf, None).is_none() {
                return out;
            }
        }
    }
    out
}

/// Reads one `fchunk` of a `page2`, its timestamps from `columns` (without them, only
/// steps over it: the view is not usable); `None` when damaged.
fn next_fchunk<'a>(
    buf: &mut &'a [u8],
    columns: Option<&dyn Fn(usize) -> Option<&'a [i64]>>,
) -> Option<ChunkView<'a>> {
    let (&tag, rest) = buf.split_first()?;
    *buf = rest;
    match tag {
        FCHUNK_WHOLE => Chunk::view(buf),
        FCHUNK_SPLIT => {
            let col = get_uvarint(buf)? as usize;
            let mut v = Chunk::view(buf)?;
            let Some(columns) = columns else {
                return Some(v);
            };
            let ts = columns(col)?;
            if ts.len() != v.count as usize || v.encoding == ENC_HISTOGRAM {
                return None;
            }
            v.min_t = *ts.first()?;
            v.max_t = *ts.last()?;
            v.ts = Some(ts);
            Some(v)
        }
        _ => None,
    }
}

/// What [`Store::write_pages`] wrote, for the log line of a persist (the bench adds
/// these up to say where the bytes at rest go).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PagesWritten {
    pub pages: usize,
    /// Bytes of the stored values (compressed), keys left out.
    pub bytes: u64,
    /// Bytes before compression.
    pub raw_bytes: u64,
    /// Of `raw_bytes`, the timestamp columns.
    pub column_bytes: u64,
    /// Pages stored as one frame because frames would have cost more (`page3`).
    pub whole_pages: usize,
}

/// Builds one page (a `page3`; a `page2` for tests of earlier data dirs) from the
/// entries of its series.
struct PageWriter {
    columns: ColumnTable,
    entries: Vec<u8>,
    /// Where each frame's entries start: (first ref, offset in `entries`).
    frames: Vec<(SeriesRef, usize)>,
    n: usize,
    last: SeriesRef,
    zstd: zstd::bulk::Compressor<'static>,
    /// A `page4`: columns kept for the whole generation (written once, after its
    /// pages), values as decimal varint chunks (`chunkenc/dvarint.rs`).
    page4: bool,
}

impl PageWriter {
    fn new(page4: bool) -> std::io::Result<PageWriter> {
        Ok(PageWriter {
            columns: ColumnTable::default(),
            entries: Vec::new(),
            frames: Vec::new(),
            n: 0,
            last: 0,
            zstd: zstd::bulk::Compressor::new(if page4 { page4::ZSTD_LEVEL } else { ZSTD_LEVEL })?,
            page4,
        })
    }

    fn add(&mut self, r: SeriesRef, chunks: &[Chunk]) {
        if self
            .frames
            .last()
            .is_none_or(|&(_, at)| self.entries.len() - at >= FRAME_BYTES)
        {
            self.frames.push((r, self.entries.len()));
        }
        // The head's chunks of one bucket joined, as the checkpoint joins them.
        let file = merge_for_file(chunks, None);
        put_uvarint(&mut self.entries, r as u64);
        put_uvarint(&mut self.entries, file.len() as u64);
        for f in &file {
            match f {
                FileChunk::Whole(c) => {
                    self.entries.push(FCHUNK_WHOLE);
                    c.encode(&mut self.entries);
                }
                FileChunk::Split(samples) => {
                    let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
                    self.entries.push(FCHUNK_SPLIT);
                    put_uvarint(&mut self.entries, self.columns.intern(&ts) as u64);
                    if self.page4 {
                        page4::values_chunk(samples).encode(&mut self.entries);
                    } else {
                        values_chunk(samples).encode(&mut self.entries);
                    }
                }
            }
        }
        self.n += 1;
        self.last = r;
    }

    /// The stored `page3` gathered so far; starts the next page.
    fn finish(&mut self, stats: &mut PagesWritten) -> std::io::Result<Vec<u8>> {
        let mut cols = Vec::with_capacity(4096);
        let mut zcols = Vec::new();
        // A page4's columns are the generation's, written after its pages.
        if !self.page4 {
            self.columns.write_and_clear(&mut cols);
            zcols = self.zstd.compress(&cols)?;
        }
        stats.column_bytes += cols.len() as u64;
        stats.raw_bytes += (cols.len() + self.entries.len()) as u64;
        stats.pages += 1;
        let mut head = Vec::with_capacity(16 + self.frames.len() * 8);
        let mut frames = Vec::with_capacity(self.frames.len());
        for (i, &(first, at)) in self.frames.iter().enumerate() {
            let end = self.frames.get(i + 1).map_or(self.entries.len(), |f| f.1);
            frames.push((first, end - at, self.zstd.compress(&self.entries[at..end])?));
        }
        // Series that repeat each other compress far better in one frame (zstd finds
        // the repeats across series): such a page is stored as one frame when frames
        // would cost more than FRAME_SLACK_PCT % more.
        if frames.len() > 1 {
            let whole = self.zstd.compress(&self.entries)?;
            let framed: usize = frames.iter().map(|f| f.2.len() + 6).sum();
            if framed * 100 > whole.len() * (100 + FRAME_SLACK_PCT) {
                stats.whole_pages += 1;
                frames = vec![(self.frames[0].0, self.entries.len(), whole)];
            }
        }
        put_uvarint(&mut head, frames.len() as u64);
        put_uvarint(&mut head, cols.len() as u64);
        put_uvarint(&mut head, zcols.len() as u64);
        let mut prev = 0u64;
        for (first, raw, z) in &frames {
            put_uvarint(&mut head, *first as u64 - prev);
            put_uvarint(&mut head, *raw as u64);
            put_uvarint(&mut head, z.len() as u64);
            prev = *first as u64;
        }
        head.extend_from_slice(&zcols);
        for (_, _, z) in &frames {
            head.extend_from_slice(z);
        }
        self.entries.clear();
        self.frames.clear();
        self.n = 0;
        stats.bytes += head.len() as u64;
        Ok(head)
    }

    /// The stored `page2` (the format of earlier versions) gathered so far.
    #[cfg(test)]
    fn finish_v2(&mut self, stats: &mut PagesWritten) -> std::io::Result<Vec<u8>> {
        let mut raw = Vec::with_capacity(self.entries.len() + 4096);
        self.columns.write_and_clear(&mut raw);
        raw.extend_from_slice(&self.entries);
        stats.pages += 1;
        self.entries.clear();
        self.frames.clear();
        self.n = 0;
        let mut out = Vec::with_capacity(raw.len() / 2 + 16);
        put_uvarint(&mut out, raw.len() as u64);
        out.extend_from_slice(&zstd::bulk::compress(&raw, ZSTD_LEVEL)?);
        stats.bytes += out.len() as u64;
        Ok(out)
    }
}

/// The values of `samples` as the smallest chunk of their own: decimal values without
/// timestamps when every value is a short decimal, else XOR at timestamps 0, 1, 2, …
fn values_chunk(samples: &[(i64, f64)]) -> Chunk {
    let indexed = ts_columns::values_only(samples);
    let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
    match decimal::encode_values(&values) {
        Some(data) if data.len() < indexed.data.len() => Chunk {
            min_t: 0,
            max_t: samples.len() as i64 - 1,
            count: samples.len() as u16,
            encoding: ENC_DECIMAL_VALUES,
            data: data.into_boxed_slice(),
        },
        _ => indexed,
    }
}

/// The raw bytes of a stored `page2`; `None` when damaged.
fn decompress_page2(v: &[u8]) -> Option<Vec<u8>> {
    let mut buf = v;
    let len = get_uvarint(&mut buf)?;
    if len > MAX_RAW_PAGE {
        return None;
    }
    let raw = zstd::bulk::decompress(buf, len as usize).ok()?;
    (raw.len() as u64 == len).then_some(raw)
}

/// What a reading thread keeps between reads: its zstd context (~100 KiB to set up)
/// and the buffer compressed bytes are read into.
struct Scratch {
    dctx: zstd::bulk::Decompressor<'static>,
    stored: Vec<u8>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Option<Scratch>> = const { std::cell::RefCell::new(None) };
}

/// Reads `stored` bytes at `at` of `file` and decompresses them into a new buffer of
/// exactly `raw` bytes, with this thread's [`Scratch`]; `None` on a read error or when
/// they do not decompress to `raw` bytes.
fn read_unpack(file: &File, at: u64, stored: usize, raw: usize) -> Option<Vec<u8>> {
    SCRATCH.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(Scratch {
                dctx: zstd::bulk::Decompressor::new().ok()?,
                stored: Vec::new(),
            });
        }
        let sc = cell.as_mut()?;
        sc.stored.resize(stored, 0);
        file.read_exact_at(&mut sc.stored, at).ok()?;
        let mut out = Vec::with_capacity(raw);
        let n = sc
            .dctx
            .decompress_to_buffer(&sc.stored[..], &mut out)
            .ok()?;
        if sc.stored.capacity() > MAX_KEPT_SCRATCH {
            sc.stored = Vec::new();
        }
        (n == raw).then_some(out)
    })
}

/// Largest read buffer a thread keeps (a bigger one, for a whole page2-sized read, is
/// given back).
const MAX_KEPT_SCRATCH: usize = 256 * 1024;

/// One frame of a `page3`, as its head lists it.
struct Frame3 {
    /// Its first ref.
    first: SeriesRef,
    /// Bytes before and after compression, and where the latter start in the page.
    raw: usize,
    stored: usize,
    at: usize,
}

/// The head of a `page3`: where its columns and frames lie.
struct Head3 {
    cols_raw: usize,
    cols_stored: usize,
    cols_at: usize,
    frames: Vec<Frame3>,
}

impl Head3 {
    /// The head at the start of `buf` (the page's first bytes) of a page of `len`
    /// bytes; `None` when cut short or damaged.
    fn parse(buf: &[u8], len: usize) -> Option<Head3> {
        let mut b = buf;
        let n = get_uvarint(&mut b)?;
        // Each frame takes at least three bytes of head.
        if n > len as u64 / 3 {
            return None;
        }
        let raw_ok = |v: u64| (v <= MAX_RAW_PAGE).then_some(v as usize);
        let cols_raw = raw_ok(get_uvarint(&mut b)?)?;
        let cols_stored = raw_ok(get_uvarint(&mut b)?)?;
        let mut frames = Vec::with_capacity(n as usize);
        let mut first = 0u64;
        for _ in 0..n {
            first = first.checked_add(get_uvarint(&mut b)?)?;
            frames.push(Frame3 {
                first: SeriesRef::try_from(first).ok()?,
                raw: raw_ok(get_uvarint(&mut b)?)?,
                stored: raw_ok(get_uvarint(&mut b)?)?,
                at: 0,
            });
        }
        let cols_at = buf.len() - b.len();
        let mut at = cols_at.checked_add(cols_stored)?;
        for fr in &mut frames {
            fr.at = at;
            at = at.checked_add(fr.stored)?;
        }
        (at == len).then_some(Head3 {
            cols_raw,
            cols_stored,
            cols_at,
            frames,
        })
    }
}

/// The (bucket, gen) of a page file's name `B-G.pages`.
fn parse_file_name(name: &str) -> Option<(i64, u32)> {
    let stem = name.strip_suffix(".pages")?;
    // The bucket may be negative: the generation follows the last '-'.
    let (b, g) = stem.rsplit_once('-')?;
    Some((b.parse().ok()?, g.parse().ok()?))
}

fn bucket_key(bucket: i64) -> [u8; 8] {
    ((bucket as u64) ^ (1 << 63)).to_be_bytes()
}

/// Key of a page: bucket, generation, last ref in the page.
pub fn page_key(bucket: i64, gen: u32, last_ref: SeriesRef) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&bucket_key(bucket));
    k[8..12].copy_from_slice(&gen.to_be_bytes());
    k[12..].copy_from_slice(&last_ref.to_be_bytes());
    k
}

fn parse_page_key(k: &[u8]) -> Option<(i64, u32, SeriesRef)> {
    if k.len() != 16 {
        return None;
    }
    let b = u64::from_be_bytes(k[..8].try_into().ok()?) ^ (1 << 63);
    let g = u32::from_be_bytes(k[8..12].try_into().ok()?);
    let r = u32::from_be_bytes(k[12..].try_into().ok()?);
    Some((b as i64, g, r))
}

impl Store {
    /// Opens (or creates) the store: sled in `dir`, page files in `pages_dir`.
    pub fn open(dir: &Path, pages_dir: &Path, cache_bytes: u64) -> sled::Result<Store> {
        let db = super::sled_open::open(
            &sled::Config::new()
                .path(dir)
                // sled holds metadata and the page index (and the pages of data dirs of
                // earlier versions): a quarter of the budget.
                .cache_capacity(cache_bytes / 4)
                .mode(sled::Mode::LowSpace)
                .flush_every_ms(None),
        )?;
        std::fs::create_dir_all(pages_dir)?;
        Ok(Store {
            pages2: db.open_tree("pages_v2")?,
            pages_dir: pages_dir.to_path_buf(),
            files: RwLock::new(HashMap::new()),
            pages: db.open_tree("pages")?,
            meta: db.open_tree("meta")?,
            db,
            dirs: RwLock::new(PageDirs::default()),
            // Decompressed page parts get the whole budget. Measured on 10,000 series
            // × 24 h (`bench/RESULTS.md`, query section): at a quarter (32 MiB) the
            // queries over many series decompressed every frame again at each run
            // (zstd, reads and allocation ~15 % of `sum by (rate)`); at 128 MiB they
            // stay, and the query phase's peak RSS went down, not up (207 vs 243 MiB:
            // parts no longer churned through the allocator).
            parts: RwLock::new(PartCache::new(cache_bytes as usize)),
        })
    }

    /// The page file of generation `gen` of `bucket`.
    fn page_file(&self, bucket: i64, gen: u32) -> PathBuf {
        self.pages_dir.join(format!("{bucket}-{gen}.pages"))
    }

    /// The open page file of (bucket, gen).
    fn open_file(&self, bucket: i64, gen: u32) -> std::io::Result<Arc<File>> {
        if let Some(f) = self.files.read().get(&(bucket, gen)) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(self.page_file(bucket, gen))?);
        self.files.write().insert((bucket, gen), f.clone());
        Ok(f)
    }

    /// Reads an i64 from `meta`.
    pub fn meta_i64(&self, key: &str) -> sled::Result<Option<i64>> {
        Ok(self
            .meta
            .get(key)?
            .and_then(|v| v.as_ref().try_into().ok().map(i64::from_le_bytes)))
    }

    /// The buckets and their complete generations (recorded in `meta` after their
    /// pages were flushed). Pages of any other generation were left by a crash in the
    /// middle of a persist: they are deleted here, and that bucket is still in the WAL.
    pub fn catalog(&self) -> sled::Result<BTreeMap<i64, Vec<u32>>> {
        let mut out: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for item in self.meta.scan_prefix(b"gen") {
            let (k, _) = item?;
            if let Some((b, g, _)) = parse_page_key(&[&k[3..], &[0u8; 4][..]].concat()) {
                out.entry(b).or_default().push(g);
            }
        }
        for tree in [&self.pages2, &self.pages] {
            let mut orphans = sled::Batch::default();
            let mut n = 0;
            for item in tree.iter() {
                let (k, _) = item?;
                if let Some((b, g, _)) = parse_page_key(&k) {
                    if !out.get(&b).is_some_and(|gens| gens.contains(&g)) {
                        orphans.remove(k);
                        n += 1;
                    }
                }
            }
            if n > 0 {
                tracing::warn!(pages = n, "deleting pages of an interrupted bucket persist");
                tree.apply_batch(orphans)?;
            }
        }
        for e in std::fs::read_dir(&self.pages_dir)? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            let known = parse_file_name(&name)
                .is_some_and(|(b, g)| out.get(&b).is_some_and(|gens| gens.contains(&g)));
            if !known {
                tracing::warn!(file = %name, "deleting a page file of an interrupted bucket persist");
                std::fs::remove_file(e.path())?;
            }
        }
        Ok(out)
    }

    /// Records that generation `gen` of `bucket` is completely written, with the refs
    /// of the series in its pages (sorted), which series GC reads (see `gc.rs`).
    pub fn mark_complete(&self, bucket: i64, gen: u32, refs: &[SeriesRef]) -> sled::Result<()> {
        let mut k = b"gen".to_vec();
        k.extend_from_slice(&page_key(bucket, gen, 0)[..12]);
        let mut deltas = Vec::with_capacity(refs.len() * 2);
        let mut prev = 0u64;
        for &r in refs {
            put_uvarint(&mut deltas, (r as u64).wrapping_sub(prev));
            prev = r as u64;
        }
        let mut v = vec![REFS_V1];
        v.extend_from_slice(
            &snap::raw::Encoder::new()
                .compress_vec(&deltas)
                .map_err(|e| sled::Error::Unsupported(format!("snappy: {e}")))?,
        );
        self.meta.insert(k, v)?;
        Ok(())
    }

    /// Every ref that has chunks in some page, or `None` when a complete generation
    /// was written before refs were kept (then nothing can be known absent).
    pub fn refs_in_pages(&self) -> Result<Option<RefSet>, String> {
        let mut out = RefSet::default();
        for item in self.meta.scan_prefix(b"gen") {
            let (_, v) = item.map_err(|e| e.to_string())?;
            let Some((&REFS_V1, packed)) = v.split_first() else {
                return Ok(None);
            };
            let raw = snap::raw::Decoder::new()
                .decompress_vec(packed)
                .map_err(|e| format!("a generation's ref list does not decompress: {e}"))?;
            let mut buf: &[u8] = &raw;
            let mut r = 0u64;
            while !buf.is_empty() {
                let d = get_uvarint(&mut buf)
                    .ok_or_else(|| "a generation's ref list is malformed".to_string())?;
                r = r.wrapping_add(d);
                out.insert(r as SeriesRef);
            }
        }
        Ok(Some(out))
    }

    /// Writes a bucket's chunks as pages of generation `gen` (format `page4`). `series`
    /// is sorted by ref. Pages go in one at a time with a flush every
    /// [`FLUSH_EVERY_PAGES`]: one batch for a whole bucket would sit in memory twice over.
    pub fn write_pages(
        &self,
        bucket: i64,
        gen: u32,
        series: &[(SeriesRef, Vec<Chunk>)],
    ) -> sled::Result<PagesWritten> {
        self.write_pages_as(bucket, gen, series, FMT_PAGE4)
    }

    /// Writes pages in the format of the previous version (`page3`), for tests that
    /// its data dirs still read.
    #[cfg(test)]
    pub fn write_pages_v3(
        &self,
        bucket: i64,
        gen: u32,
        series: &[(SeriesRef, Vec<Chunk>)],
    ) -> sled::Result<PagesWritten> {
        self.write_pages_as(bucket, gen, series, FMT_PAGE3)
    }

    /// Writes pages as `page4` or (for tests of earlier data dirs) `page3` or `page2`
    /// (`fmt`: [`FMT_PAGE4`], [`FMT_PAGE3`], [`FMT_PAGE2`]).
    fn write_pages_as(
        &self,
        bucket: i64,
        gen: u32,
        series: &[(SeriesRef, Vec<Chunk>)],
        fmt: u8,
    ) -> sled::Result<PagesWritten> {
        use std::io::Write;
        let zstd_err = |e: std::io::Error| sled::Error::Unsupported(format!("zstd: {e}"));
        let path = self.page_file(bucket, gen);
        let tmp = path.with_extension("tmp");
        let mut file = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        // Each page's key and location (offset, length); indexed once the file is
        // written (a page4's location names the columns written after the pages).
        let mut locs: Vec<([u8; 16], u64, u32)> = Vec::new();
        let mut at = 0u64;
        let mut put = |v: Vec<u8>, last: SeriesRef| -> sled::Result<()> {
            file.write_all(&v)?;
            locs.push((page_key(bucket, gen, last), at, v.len() as u32));
            at += v.len() as u64;
            Ok(())
        };
        let mut w = PageWriter::new(fmt == FMT_PAGE4).map_err(zstd_err)?;
        let mut stats = PagesWritten::default();
        let finish = |w: &mut PageWriter, stats: &mut PagesWritten| {
            #[cfg(test)]
            if fmt == FMT_PAGE2 {
                return w.finish_v2(stats);
            }
            w.finish(stats)
        };
        for (r, chunks) in series {
            w.add(*r, chunks);
            if w.entries.len() >= PAGE_BYTES {
                let last = w.last;
                put(finish(&mut w, &mut stats).map_err(zstd_err)?, last)?;
            }
        }
        if w.n > 0 {
            let last = w.last;
            put(finish(&mut w, &mut stats).map_err(zstd_err)?, last)?;
        }
        // A page4 file ends with the generation's columns.
        let mut cols_loc = [0u8; 16];
        if fmt == FMT_PAGE4 {
            let (raw, z) = page4::columns_block(&mut w).map_err(zstd_err)?;
            stats.column_bytes += raw as u64;
            stats.raw_bytes += raw as u64;
            stats.bytes += z.len() as u64;
            file.write_all(&z)?;
            cols_loc[..8].copy_from_slice(&at.to_le_bytes());
            cols_loc[8..12].copy_from_slice(&(z.len() as u32).to_le_bytes());
            cols_loc[12..].copy_from_slice(&(raw as u32).to_le_bytes());
        }
        let mut index = sled::Batch::default();
        for (key, off, len) in locs {
            let mut loc = Vec::with_capacity(29);
            loc.extend_from_slice(&off.to_le_bytes());
            loc.extend_from_slice(&len.to_le_bytes());
            if fmt != FMT_PAGE2 {
                loc.push(fmt);
            }
            if fmt == FMT_PAGE4 {
                loc.extend_from_slice(&cols_loc);
            }
            index.insert(&key[..], loc);
        }
        // Written, synced, renamed (and the rename synced), and only then indexed: a
        // crash leaves at most a file that no complete generation names (deleted at
        // the next start by `catalog`).
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        File::open(&self.pages_dir)?.sync_all()?;
        self.pages2.apply_batch(index)?;
        Ok(stats)
    }

    /// Writes pages in the format of the previous version (`page2`), for tests that
    /// its data dirs still read.
    #[cfg(test)]
    pub fn write_pages_v2(
        &self,
        bucket: i64,
        gen: u32,
        series: &[(SeriesRef, Vec<Chunk>)],
    ) -> sled::Result<PagesWritten> {
        self.write_pages_as(bucket, gen, series, FMT_PAGE2)
    }

    /// Writes pages in the format of earlier versions (`page`), for tests that old
    /// data dirs still read.
    #[cfg(test)]
    pub fn write_pages_v1(
        &self,
        bucket: i64,
        gen: u32,
        series: &[(SeriesRef, Vec<Chunk>)],
    ) -> sled::Result<usize> {
        let mut entries: Vec<u8> = Vec::new();
        let (mut n, mut pages, mut last) = (0u64, 0, 0);
        let emit = |entries: &mut Vec<u8>, n: &mut u64, last: SeriesRef| {
            let mut page = Vec::new();
            put_uvarint(&mut page, *n);
            page.extend_from_slice(entries);
            entries.clear();
            *n = 0;
            self.pages.insert(page_key(bucket, gen, last), page)
        };
        for (r, chunks) in series {
            put_uvarint(&mut entries, *r as u64);
            put_uvarint(&mut entries, chunks.len() as u64);
            for c in chunks {
                c.compact().encode(&mut entries);
            }
            n += 1;
            last = *r;
            if entries.len() >= 64 * 1024 {
                emit(&mut entries, &mut n, last)?;
                pages += 1;
            }
        }
        if n > 0 {
            emit(&mut entries, &mut n, last)?;
            pages += 1;
        }
        Ok(pages)
    }

    /// The directory of the page under `key`, built by `build` the first time.
    fn dir(
        &self,
        key: &[u8],
        build: impl FnOnce() -> Vec<(SeriesRef, u32)>,
    ) -> Arc<[(SeriesRef, u32)]> {
        let Ok(k) = <[u8; 16]>::try_from(key) else {
            return build().into();
        };
        if let Some(d) = self.dirs.read().map.get(&k) {
            return d.clone();
        }
        let d: Arc<[(SeriesRef, u32)]> = build().into();
        let mut dirs = self.dirs.write();
        if dirs.entries + d.len() > PAGE_DIR_ENTRIES {
            dirs.map.clear();
            dirs.entries = 0;
        }
        if dirs.map.insert(k, d.clone()).is_none() {
            dirs.entries += d.len();
        }
        d
    }

    /// Calls `f(ref, chunks)` for every series of `refs` (sorted) found in the pages of
    /// one bucket and generation; the chunks are read in place from the page.
    ///
    /// Pages between two wanted series are skipped by seeking to the page of the next
    /// wanted ref (the key ends with the page's last ref); inside a page, the page's
    /// directory gives where a wanted series' entry starts.
    pub fn read_pages(
        &self,
        bucket: i64,
        gen: u32,
        refs: &[SeriesRef],
        mut f: impl FnMut(SeriesRef, &[ChunkView<'_>]),
    ) -> sled::Result<()> {
        let start = page_key(bucket, gen, 0);
        let end = page_key(bucket, gen, u32::MAX);
        // A generation's pages are all in one tree: the current one unless this
        // generation was written by an earlier version.
        let v2 = self.pages.is_empty() || self.pages2.range(start..=end).next().is_some();
        let tree = if v2 { &self.pages2 } else { &self.pages };
        let mut want = refs.iter().copied().peekable();
        while let Some(&next) = want.peek() {
            // The first page whose last ref is at or after the next wanted ref.
            let Some(item) = tree.range(page_key(bucket, gen, next)..=end).next() else {
                break;
            };
            let (key, v) = item?;
            let page_last = parse_page_key(&key).map_or(u32::MAX, |k| k.2);
            if v2 && v.len() == page4::LOC_LEN && v[12] == FMT_PAGE4 {
                let read = self.read_page4(bucket, gen, &v, page_last, &mut want, &mut f);
                if read.is_none() {
                    tracing::error!(bucket, gen, "a damaged page is skipped");
                }
                while want.peek().is_some_and(|w| *w <= page_last) {
                    want.next();
                }
                continue;
            }
            if v2 && v.len() == 13 && v[12] == FMT_PAGE3 {
                let read = self.read_page3(bucket, gen, &v, page_last, &mut want, &mut f);
                if read.is_none() {
                    tracing::error!(bucket, gen, "a damaged page is skipped");
                }
                // Everything up to this page's last ref is settled.
                while want.peek().is_some_and(|w| *w <= page_last) {
                    want.next();
                }
                continue;
            }
            let (raw, columns, from);
            if v2 {
                let stored = (|| {
                    let off = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
                    let len = u32::from_le_bytes(v.get(8..12)?.try_into().ok()?);
                    let file = self.open_file(bucket, gen).ok()?;
                    let mut buf = vec![0u8; len as usize];
                    file.read_exact_at(&mut buf, off).ok()?;
                    Some(buf)
                })();
                let decoded = stored.as_deref().and_then(decompress_page2).and_then(|r| {
                    let mut buf: &[u8] = &r;
                    let cols = ts_columns::read_columns(&mut buf)?;
                    let from = r.len() - buf.len();
                    Some((r, cols, from))
                });
                let Some(d) = decoded else {
                    tracing::error!(bucket, gen, "a damaged page is skipped");
                    while want.peek().is_some_and(|w| *w <= page_last) {
                        want.next();
                    }
                    continue;
                };
                (raw, columns, from) = d;
            } else {
                (raw, columns, from) = (Vec::new(), Vec::new(), 0);
            }
            let page: &[u8] = if v2 { &raw } else { &v };
            let dir = if v2 {
                self.dir(&key, || page2_dir(page, from))
            } else {
                self.dir(&key, || page_dir(page))
            };
            // The views borrow this page's bytes: one list per page, cleared per entry.
            let mut views: Vec<ChunkView<'_>> = Vec::new();
            let mut at = 0usize;
            while let Some(&w) = want.peek() {
                if w > page_last {
                    break;
                }
                want.next();
                at += dir[at..].partition_point(|e| e.0 < w);
                let Some(&(r, off)) = dir.get(at) else {
                    continue;
                };
                if r != w {
                    continue;
                }
                let mut buf: &[u8] = page.get(off as usize..).unwrap_or(&[]);
                let (Some(_), Some(k)) = (get_uvarint(&mut buf), get_uvarint(&mut buf)) else {
                    continue;
                };
                views.clear();
                for _ in 0..k {
                    let c = if v2 {
                        next_fchunk(&mut buf, Some(&|i| columns.get(i).map(|c| &c[..])))
                    } else {
                        Chunk::view(&mut buf)
                    };
                    match c {
                        Some(c) => views.push(c),
                        None => break,
                    }
                }
                f(r, &views);
            }
            // Everything up to this page's last ref is settled.
            while want.peek().is_some_and(|w| *w <= page_last) {
                want.next();
            }
        }
        Ok(())
    }

    /// The head and columns of the `page3` at `off` (`len` bytes) of `file`, from the
    /// cache or read, decompressed and cached; `None` when damaged.
    fn page3(&self, key: PartKey, file: &File, off: u64, len: usize) -> Option<Arc<Page3>> {
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
        let cols = read_unpack(
            file,
            off + head.cols_at as u64,
            head.cols_stored,
            head.cols_raw,
        )?;
        let spans = ts_columns::LazyColumns::spans(&cols)?;
        // Counted as if every column were decoded (8 bytes a timestamp).
        let decoded_max: usize = spans.iter().map(|s| s.0 as usize * 8 + 16).sum();
        let size = cols.len() + spans.len() * 16 + head.frames.len() * 32 + decoded_max;
        let decoded = (0..spans.len()).map(|_| Default::default()).collect();
        let page = Arc::new(Page3 {
            head,
            cols,
            spans,
            decoded,
        });
        self.parts
            .write()
            .insert(key, Part::Page(page.clone()), size);
        Some(page)
    }

    /// Frame `fi` of the page3 at `off` of `file`, from the cache or read, decompressed
    /// and cached; `None` when damaged.
    fn frame3(&self, key: PartKey, file: &File, off: u64, fr: &Frame3) -> Option<Arc<Frame>> {
        if let Some(Part::Frame(f)) = self.parts.read().map.get(&key) {
            return Some(f.clone());
        }
        let frame = Arc::new(Frame::new(read_unpack(
            file,
            off + fr.at as u64,
            fr.stored,
            fr.raw,
        )?)?);
        let size = frame.bytes.len() + frame.dir.len() * std::mem::size_of::<(SeriesRef, u32)>();
        self.parts
            .write()
            .insert(key, Part::Frame(frame.clone()), size);
        Some(frame)
    }

    /// Reads the wanted series of one `page3` (its index value `loc`): the head, then
    /// the columns and each frame holding a wanted ref, each decompressed once (and
    /// kept in the cache of decompressed parts).
    /// Consumes from `want` the refs it read; `None` when the page is damaged (what
    /// was read before the damage was passed to `f`).
    fn read_page3(
        &self,
        bucket: i64,
        gen: u32,
        loc: &[u8],
        page_last: SeriesRef,
        want: &mut std::iter::Peekable<impl Iterator<Item = SeriesRef>>,
        f: &mut impl FnMut(SeriesRef, &[ChunkView<'_>]),
    ) -> Option<()> {
        let off = u64::from_le_bytes(loc.get(..8)?.try_into().ok()?);
        let len = u32::from_le_bytes(loc.get(8..12)?.try_into().ok()?) as usize;
        if want.peek().is_none_or(|w| *w > page_last) {
            return Some(());
        }
        let file = self.open_file(bucket, gen).ok()?;
        let page = self.page3((bucket, gen, off, PAGE_PART), &file, off, len)?;
        self.read_frames(
            (bucket, gen, off),
            &file,
            &page.head,
            &page,
            page_last,
            want,
            f,
        )
    }

    /// The frames of one page3 or page4 (at `off` of `file`, located by `head`) that
    /// hold a wanted ref, each decompressed once (and kept in the cache of decompressed
    /// parts); timestamps from `columns` (the page's own, or its generation's for a
    /// page4), each column decoded once while cached. Consumes from `want` the refs
    /// it read and passes each to `f`; `None` when a frame's entries are damaged.
    #[allow(clippy::too_many_arguments)]
    fn read_frames(
        &self,
        (bucket, gen, off): (i64, u32, u64),
        file: &File,
        head: &Head3,
        columns: &Page3,
        page_last: SeriesRef,
        want: &mut std::iter::Peekable<impl Iterator<Item = SeriesRef>>,
        f: &mut impl FnMut(SeriesRef, &[ChunkView<'_>]),
    ) -> Option<()> {
        let mut fi = 0usize;
        while let Some(&w) = want.peek() {
            if w > page_last {
                break;
            }
            // The frame holding `w`: the last one starting at or before it.
            fi += head.frames[fi..].partition_point(|fr| fr.first <= w);
            if fi == 0 {
                want.next();
                continue;
            }
            let fr = &head.frames[fi - 1];
            let frame_end = head.frames.get(fi).map_or(page_last, |n| n.first - 1);
            let key = (bucket, gen, off, (fi - 1) as u32);
            let Some(frame) = self.frame3(key, file, off, fr) else {
                tracing::error!(bucket, gen, first = fr.first, "a damaged frame is skipped");
                while want.peek().is_some_and(|w| *w <= frame_end) {
                    want.next();
                }
                continue;
            };
            // Each wanted ref the frame may hold, found through its directory.
            let col = |i| columns.column(i);
            let mut views: Vec<ChunkView<'_>> = Vec::new();
            while let Some(&w) = want.peek() {
                if w > frame_end {
                    break;
                }
                want.next();
                let Some(mut at) = frame.entry(w) else {
                    continue;
                };
                get_uvarint(&mut at)?;
                let k = get_uvarint(&mut at)?;
                views.clear();
                for _ in 0..k {
                    views.push(next_fchunk(&mut at, Some(&col))?);
                }
                f(w, &views);
            }
        }
        Some(())
    }

    /// Deletes every page of buckets older than `before`. Returns pages deleted.
    pub fn delete_buckets_before(&self, before: i64) -> sled::Result<usize> {
        let end = page_key(before, 0, 0);
        let mut n = 0;
        for tree in [&self.pages2, &self.pages] {
            let mut batch = sled::Batch::default();
            for item in tree.range(..end) {
                let (k, _) = item?;
                batch.remove(k);
                n += 1;
            }
            tree.apply_batch(batch)?;
        }
        let mut marks = sled::Batch::default();
        for item in self.meta.scan_prefix(b"gen") {
            let (k, _) = item?;
            if k.len() >= 11 && k[3..11] < bucket_key(before)[..] {
                marks.remove(k);
            }
        }
        self.meta.apply_batch(marks)?;
        self.files.write().retain(|(b, _), _| *b >= before);
        for e in std::fs::read_dir(&self.pages_dir)? {
            let e = e?;
            let name = e.file_name();
            if parse_file_name(&name.to_string_lossy()).is_some_and(|(b, _)| b < before) {
                std::fs::remove_file(e.path())?;
            }
        }
        let mut dirs = self.dirs.write();
        let cut = bucket_key(before);
        dirs.map.retain(|k, _| k[..8] >= cut[..]);
        dirs.entries = dirs.map.values().map(|d| d.len()).sum();
        self.parts.write().forget_before(before);
        Ok(n)
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        let files: u64 = std::fs::read_dir(&self.pages_dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        self.db.size_on_disk().unwrap_or(0) + files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test store in `dir` (sled in `sled/`, pages in `pages/`).
    fn open_test_store(dir: &Path) -> Store {
        Store::open(&dir.join("sled"), &dir.join("pages"), 1 << 20).unwrap()
    }

    #[test]
    fn pages_are_found_by_ref_and_catalogued() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path());
        let series: Vec<(SeriesRef, Vec<Chunk>)> = (0..5000u32)
            .map(|r| {
                // Noisy enough for several pages.
                let s: Vec<(i64, f64)> = (0..100)
                    .map(|i| (i * 15_000, ((r as i64 * i) ^ (i * 7919 % 4093)) as f64))
                    .collect();
                (r * 3, vec![Chunk::from_samples(&s)])
            })
            .collect();
        let pages = store.write_pages(7_200_000, 1, &series).unwrap().pages;
        assert!(pages > 1);
        // Not marked complete: a crash mid-persist; catalog() deletes the pages.
        store.write_pages(7_200_000, 2, &series[..10]).unwrap();
        assert_eq!(store.refs_in_pages().unwrap(), Some(RefSet::default()));
        let refs: Vec<SeriesRef> = series.iter().map(|s| s.0).collect();
        store.mark_complete(7_200_000, 1, &refs).unwrap();
        let known = store.refs_in_pages().unwrap().expect("refs kept");
        assert_eq!(known.len(), 5000);
        assert!(known.contains(14_997) && !known.contains(14_998) && !known.contains(u32::MAX));
        // A mark written before refs were kept: nothing can be known absent.
        store.meta.insert(b"gen-old", &[]).unwrap();
        assert_eq!(store.refs_in_pages().unwrap(), None);
        store.meta.remove(b"gen-old").unwrap();
        let mut got = vec![];
        store
            .read_pages(
                7_200_000,
                1,
                &[3, 4, 9000, 14_997],
                |r, c: &[ChunkView<'_>]| got.push((r, c[0].count)),
            )
            .unwrap();
        assert_eq!(got, vec![(3, 100), (9000, 100), (14_997, 100)]);
        let cat = store.catalog().unwrap();
        assert_eq!(cat.get(&7_200_000), Some(&vec![1]));
        assert_eq!(store.delete_buckets_before(7_200_001).unwrap(), pages);
        assert!(store.catalog().unwrap().is_empty());
    }

    /// The float samples of `views`, timestamps and value bits, read both ways a
    /// query reads them (the iterator and `decode_into` over the whole range); and
    /// checks what a timestamps-only read gives (`times_only`).
    fn floats(views: &[ChunkView<'_>]) -> Vec<(i64, u64)> {
        let mut a: Vec<(i64, u64)> = vec![];
        let mut b: Vec<(i64, f64)> = vec![];
        for c in views {
            a.extend(c.iter().map(|(t, v)| (t, v.to_bits())));
            c.decode_into(&mut b, i64::MIN, i64::MAX);
        }
        let b: Vec<(i64, u64)> = b.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(a, b, "iterator and decode_into agree");
        times_only(views);
        a
    }

    /// Checks `decode_times_into` against `decode_into` over `views`, in a window that
    /// cuts chunks and over everything: the same timestamps, each value its own bits or
    /// `NO_VALUE`, `NO_VALUE` only in decimal chunks whose timestamps are a column, and
    /// every stale marker kept. Returns (values skipped, stale markers kept).
    fn times_only(views: &[ChunkView<'_>]) -> (usize, usize) {
        use crate::tsdb::chunkenc::{
            ENC_DECIMAL, ENC_DECIMAL_VALUES, ENC_DECIMAL_VARINT, NO_VALUE,
        };
        let (mut skipped, mut stale) = (0, 0);
        for c in views {
            let mid = c.min_t + (c.max_t - c.min_t) / 3;
            for (mint, maxt) in [(i64::MIN, i64::MAX), (mid, c.max_t - 1)] {
                let (mut full, mut times) = (vec![], vec![]);
                c.decode_into(&mut full, mint, maxt);
                c.decode_times_into(&mut times, mint, maxt);
                assert_eq!(full.len(), times.len(), "encoding {}", c.encoding);
                let values_apart = c.ts.is_some()
                    && matches!(
                        c.encoding,
                        ENC_DECIMAL | ENC_DECIMAL_VALUES | ENC_DECIMAL_VARINT
                    )
                    && !(c.encoding == ENC_DECIMAL_VARINT
                        && crate::tsdb::chunkenc::dvarint::is_raw_bits(c.data));
                for ((ft, fv), (tt, tv)) in full.iter().zip(&times) {
                    assert_eq!(ft, tt, "encoding {}", c.encoding);
                    if calm_wire::value::is_stale_nan(*fv) {
                        assert!(calm_wire::value::is_stale_nan(*tv), "a stale marker lost");
                        stale += 1;
                    } else if tv.to_bits() != fv.to_bits() {
                        assert!(values_apart, "encoding {}: value changed", c.encoding);
                        assert_eq!(tv.to_bits(), NO_VALUE.to_bits());
                        skipped += 1;
                    }
                }
            }
        }
        (skipped, stale)
    }

    /// Series of every kind a page holds, in ref order: decimal counters and noisy
    /// gauges sharing scrape instants (several head chunks each), series scraped at
    /// their own instants, special values, and native histograms.
    fn mixed_series() -> Vec<(SeriesRef, Vec<Chunk>)> {
        use super::super::histogram::{encode_chunk, FloatHistogram, Span};
        let t0 = 1_700_000_400_000i64;
        let shared: Vec<i64> = (0..480).map(|i| t0 + i * 15_000 + (i * 7) % 5).collect();
        let cut = |samples: &[(i64, f64)]| -> Vec<Chunk> {
            samples.chunks(120).map(Chunk::from_samples).collect()
        };
        let mut out = vec![];
        for r in 0..3000u32 {
            let samples: Vec<(i64, f64)> = match r % 4 {
                0 => shared
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| (t, 1000.0 + (i as f64) * 2.5 * r as f64))
                    .collect(),
                1 => shared
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| (t, ((i + r as usize) as f64).sin() * 1e-3))
                    .collect(),
                2 => (0..200)
                    .map(|i| (t0 + 7 + i * 30_000 + r as i64 % 11, (i * r as i64) as f64))
                    .collect(),
                _ => shared[..5]
                    .iter()
                    .zip([
                        f64::NAN,
                        -0.0,
                        f64::INFINITY,
                        1.0,
                        calm_wire::value::stale_nan(),
                    ])
                    .map(|(&t, v)| (t, v))
                    .collect(),
            };
            let mut chunks = cut(&samples);
            if r % 100 == 0 {
                let hs: Vec<(i64, Arc<FloatHistogram>)> = (0..10)
                    .map(|i| {
                        let h = FloatHistogram {
                            count: 10.0 + i as f64,
                            sum: 3.5 * i as f64,
                            positive_spans: vec![Span {
                                offset: 0,
                                length: 2,
                            }],
                            positive_buckets: vec![4.0, 6.0 + i as f64],
                            ..Default::default()
                        };
                        (t0 + 3_600_000 + i * 60_000, Arc::new(h))
                    })
                    .collect();
                let data = encode_chunk(&hs);
                chunks.push(Chunk {
                    min_t: hs[0].0,
                    max_t: hs[9].0,
                    count: 10,
                    encoding: ENC_HISTOGRAM,
                    data: data.into_boxed_slice(),
                });
            }
            out.push((r * 2 + 1, chunks));
        }
        out
    }

    fn want_floats(chunks: &[Chunk]) -> Vec<(i64, u64)> {
        chunks
            .iter()
            .flat_map(|c| c.iter().map(|(t, v)| (t, v.to_bits())))
            .collect()
    }

    fn want_hist(chunks: &[Chunk]) -> Vec<(i64, u8, u16)> {
        chunks
            .iter()
            .filter(|c| c.encoding == ENC_HISTOGRAM)
            .map(|c| (c.min_t, c.data[0], c.count))
            .collect()
    }

    /// Reads every series of `series` back from (bucket, gen) and compares it with
    /// what was written, floats bit for bit and histogram chunks byte for byte.
    fn assert_reads_back(store: &Store, bucket: i64, gen: u32, series: &[(SeriesRef, Vec<Chunk>)]) {
        let refs: Vec<SeriesRef> = series.iter().map(|s| s.0).collect();
        type Read = (Vec<(i64, u64)>, Vec<Vec<u8>>);
        let mut got: BTreeMap<SeriesRef, Read> = BTreeMap::new();
        store
            .read_pages(bucket, gen, &refs, |r, views| {
                let hist = views
                    .iter()
                    .filter(|c| c.encoding == ENC_HISTOGRAM)
                    .map(|c| c.data.to_vec())
                    .collect();
                got.insert(r, (floats(views), hist));
            })
            .unwrap();
        assert_eq!(got.len(), series.len());
        for (r, chunks) in series {
            let (f, h) = &got[r];
            assert_eq!(f, &want_floats(chunks), "series {r}");
            let wh: Vec<Vec<u8>> = chunks
                .iter()
                .filter(|c| c.encoding == ENC_HISTOGRAM)
                .map(|c| c.data.to_vec())
                .collect();
            assert_eq!(h, &wh, "histograms of series {r}");
            assert!(want_hist(chunks).len() == wh.len());
        }
        // A sparse selection, with refs that are absent (even ones), reads the same.
        let some: Vec<SeriesRef> = (0..6000u32).step_by(97).collect();
        let mut n = 0;
        store
            .read_pages(bucket, gen, &some, |r, views| {
                n += 1;
                let (_, chunks) = series.iter().find(|s| s.0 == r).unwrap();
                assert_eq!(floats(views), want_floats(chunks));
            })
            .unwrap();
        assert_eq!(n, some.iter().filter(|r| *r % 2 == 1).count());
    }

    #[test]
    fn page2_round_trip_decimal_xor_histograms_and_shared_columns() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path());
        let series = mixed_series();
        let w = store.write_pages(7_200_000, 4, &series).unwrap();
        assert!(w.pages > 1, "several pages: {w:?}");
        // A timestamps-only read leaves decimal values undecoded, keeps stale markers.
        let refs: Vec<SeriesRef> = series.iter().map(|s| s.0).collect();
        let (mut skipped, mut stale) = (0, 0);
        store
            .read_pages(7_200_000, 4, &refs, |_, views| {
                let (a, b) = times_only(views);
                skipped += a;
                stale += b;
            })
            .unwrap();
        assert!(skipped > 100_000 && stale == 750, "{skipped} {stale}");
        assert!(w.column_bytes > 0 && w.raw_bytes > w.bytes, "{w:?}");
        store.mark_complete(7_200_000, 4, &refs).unwrap();
        assert_reads_back(&store, 7_200_000, 4, &series);
        // Series GC's ref lists.
        let known = store.refs_in_pages().unwrap().expect("refs kept");
        assert_eq!(known.len(), series.len());
        assert!(known.contains(1) && !known.contains(2) && known.contains(5999));
        // Smaller than the old format: the timestamps shared, the page compressed.
        let v1 = Store::open(
            &dir.path().join("v1"),
            &dir.path().join("v1-pages"),
            1 << 20,
        )
        .unwrap();
        v1.write_pages_v1(7_200_000, 4, &series).unwrap();
        let old: usize = v1.pages.iter().map(|i| i.unwrap().1.len()).sum();
        let new = std::fs::metadata(store.page_file(7_200_000, 4))
            .unwrap()
            .len() as usize;
        assert_eq!(new as u64, w.bytes);
        let w2 = store.write_pages_v2(7_200_000, 5, &series).unwrap();
        assert!(new * 2 < old, "page3 {new} bytes vs page {old} bytes");
        // Series that repeat each other (as these do) compress far better in one
        // frame: such pages are stored so, at most a few % above the previous format.
        assert!(w.whole_pages > 0, "{w:?}");
        assert!(
            w.bytes * 100 < w2.bytes * 104,
            "page3 {w:?} vs page2 {w2:?}"
        );
    }

    /// Gauges of random values (no two series alike, nothing for zstd to find).
    fn noisy_series() -> Vec<(SeriesRef, Vec<Chunk>)> {
        let t0 = 1_700_000_400_000i64;
        let mut x = crate::tsdb::chunkenc::TestRng(0x9e37_79b9_7f4a_7c15);
        let mut rnd = move || x.bits();
        (0..800u32)
            .map(|r| {
                let samples: Vec<(i64, f64)> = (0..480)
                    .map(|i| {
                        let v = f64::from_bits(rnd() >> 12 | 0x3ff0_0000_0000_0000);
                        (t0 + i * 15_000 + (r as i64 % 7), v)
                    })
                    .collect();
                let chunks = samples.chunks(120).map(Chunk::from_samples).collect();
                (r * 2 + 1, chunks)
            })
            .collect()
    }

    /// Exporter-like series of 40 hosts (a column each): seconds counters with noisy
    /// increments, byte counters, gauges moving by whole pages, spread over refs.
    fn exporter_series() -> Vec<(SeriesRef, Vec<Chunk>)> {
        let t0 = 1_700_000_400_000i64;
        let mut x = crate::tsdb::chunkenc::TestRng(0x2545_f491_4f6c_dd1d);
        let mut rnd = move |n: u64| x.below(n);
        (0..3000u32)
            .map(|r| {
                let host = r as i64 % 40;
                let mut v = rnd(1_000_000) as f64;
                let samples: Vec<(i64, f64)> = (0..480)
                    .map(|i| {
                        v = match r % 3 {
                            0 => ((v * 100.0 + 600.0 + rnd(600) as f64).round()) / 100.0,
                            1 => v + 1000.0 + rnd(100_000) as f64,
                            _ if rnd(4) == 0 => v + 4096.0 * rnd(512) as f64,
                            _ => v,
                        };
                        (t0 + i * 15_000 + host * 100 + (host * 7 + i * 13) % 5, v)
                    })
                    .collect();
                let chunks = samples.chunks(120).map(Chunk::from_samples).collect();
                (r * 2 + 1, chunks)
            })
            .collect()
    }

    #[test]
    fn page4_is_smaller_than_page3_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path());
        let series = exporter_series();
        let refs: Vec<SeriesRef> = series.iter().map(|s| s.0).collect();
        let w3 = store.write_pages_v3(0, 1, &series).unwrap();
        let w4 = store.write_pages(7_200_000, 2, &series).unwrap();
        for (b, g) in [(0, 1), (7_200_000, 2)] {
            store.mark_complete(b, g, &refs).unwrap();
            assert_reads_back(&store, b, g, &series);
        }
        assert!(w4.pages > 1, "{w4:?}");
        let file = |b, g| std::fs::metadata(store.page_file(b, g)).unwrap().len();
        assert_eq!(file(7_200_000, 2), w4.bytes);
        // One column per host for the whole generation, not per page.
        assert!(w4.column_bytes * 5 < w3.column_bytes, "{w3:?} vs {w4:?}");
        assert!(w4.bytes * 100 < w3.bytes * 85, "{w3:?} vs {w4:?}");
    }

    #[test]
    fn a_repeated_read_is_served_from_the_decompressed_parts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("sled"),
            &dir.path().join("pages"),
            64 << 20,
        )
        .unwrap();
        let series = noisy_series();
        store.write_pages(0, 1, &series).unwrap();
        let refs: Vec<SeriesRef> = series.iter().map(|s| s.0).step_by(7).collect();
        let read = |store: &Store| {
            let mut got = vec![];
            store
                .read_pages(0, 1, &refs, |r, views| got.push((r, floats(views))))
                .unwrap();
            got
        };
        let first = read(&store);
        assert_eq!(first.len(), refs.len());
        let cached = store.parts.read().bytes;
        assert!(cached > 0 && cached <= 16 << 20, "{cached} bytes cached");
        // The file zeroed: the second read needs none of it.
        let path = store.page_file(0, 1);
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        std::fs::write(&path, vec![0u8; len]).unwrap();
        assert_eq!(read(&store), first);
        // Retention forgets the parts of the buckets it deletes.
        store.delete_buckets_before(1).unwrap();
        assert_eq!(store.parts.read().bytes, 0);
        assert!(store.parts.read().map.is_empty());
    }

    #[test]
    fn a_selective_read_decompresses_only_the_frames_it_needs() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path());
        let series = noisy_series();
        let w = store.write_pages(0, 1, &series).unwrap();
        let w2 = store.write_pages_v2(0, 2, &series).unwrap();
        assert_eq!(w.whole_pages, 0, "{w:?}");
        // Frames cost a few % of the previous format's bytes (one zstd frame a page).
        assert!(
            w.bytes * 100 < w2.bytes * 103,
            "page3 {w:?} vs page2 {w2:?}"
        );
        // Damage every frame of the file but the one holding ref 1001: reading it
        // still works, reading the series of other frames fails.
        let path = store.page_file(0, 1);
        let bytes = std::fs::read(&path).unwrap();
        let mut damaged = bytes.clone();
        let (mut at, mut keep) = (0usize, vec![]);
        for item in store.pages2.range(..page_key(0, 2, 0)) {
            let (k, v) = item.unwrap();
            let last = parse_page_key(&k).unwrap().2;
            let len = u32::from_le_bytes(v[8..12].try_into().unwrap()) as usize;
            let head = Head3::parse(&bytes[at..at + len], len).unwrap();
            // Every page but a short last one (whose end is where the columns are).
            let cols_at = u64::from_le_bytes(v[13..21].try_into().unwrap()) as usize;
            assert!(
                head.frames.len() > 1 || (at + len == cols_at && len < 2 * FRAME_BYTES),
                "{} frames",
                head.frames.len()
            );
            // A head cut short (a first read too small) is not taken for a head.
            assert!(Head3::parse(&bytes[at..at + head.cols_at - 1], len).is_none());
            assert!(Head3::parse(&bytes[at..at + len], len + 1).is_none());
            for (i, fr) in head.frames.iter().enumerate() {
                let end = head.frames.get(i + 1).map_or(last, |n| n.first - 1);
                if (fr.first..=end).contains(&1001) {
                    keep.push((at + head.cols_at, head.cols_stored));
                    keep.push((at + fr.at, fr.stored));
                } else {
                    damaged[at + fr.at + fr.stored / 2] ^= 0x5a;
                    damaged[at + fr.at + 1] ^= 0xff;
                }
            }
            at += len;
        }
        assert_eq!(keep.len(), 2);
        std::fs::write(&path, damaged).unwrap();
        let mut got = vec![];
        store
            .read_pages(0, 1, &[1001], |r, views| got.push((r, floats(views))))
            .unwrap();
        let want: Vec<_> = [1001u32]
            .iter()
            .map(|r| {
                (
                    *r,
                    want_floats(&series.iter().find(|s| s.0 == *r).unwrap().1),
                )
            })
            .collect();
        assert_eq!(got, want);
        let mut n = 0;
        let refs: Vec<SeriesRef> = series.iter().map(|s| s.0).collect();
        store.read_pages(0, 1, &refs, |_, _| n += 1).unwrap();
        assert!(n < series.len() / 2, "{n} series read from damaged frames");
    }

    #[test]
    fn data_dirs_of_earlier_versions_still_read_next_to_new_pages() {
        let dir = tempfile::tempdir().unwrap();
        let series = mixed_series();
        let refs: Vec<SeriesRef> = series.iter().map(|s| s.0).collect();
        {
            let store = open_test_store(dir.path());
            store.write_pages_v1(0, 1, &series).unwrap();
            store.mark_complete(0, 1, &refs).unwrap();
            store.write_pages_v1(7_200_000, 2, &series[..5]).unwrap(); // interrupted
            store.db.flush().unwrap();
        }
        let store = open_test_store(dir.path());
        store.write_pages(7_200_000, 3, &series).unwrap();
        store.mark_complete(7_200_000, 3, &refs).unwrap();
        // A page file of the previous version (one zstd frame per page).
        store.write_pages_v2(3_600_000, 5, &series).unwrap();
        store.mark_complete(3_600_000, 5, &refs).unwrap();
        // A page file of the version before this one (page3: columns in each page).
        store.write_pages_v3(-7_200_000, 6, &series).unwrap();
        store.mark_complete(-7_200_000, 6, &refs).unwrap();
        store.write_pages(14_400_000, 4, &series[..5]).unwrap(); // interrupted
        let cat = store.catalog().unwrap();
        assert_eq!(
            cat.keys().copied().collect::<Vec<_>>(),
            vec![-7_200_000, 0, 3_600_000, 7_200_000]
        );
        assert_eq!(store.pages2.range(page_key(14_400_000, 0, 0)..).count(), 0);
        assert!(!store.page_file(14_400_000, 4).exists());
        assert!(store.page_file(7_200_000, 3).exists());
        // A persist that crashed before its rename left a temporary file.
        std::fs::write(store.page_file(7_200_000, 9).with_extension("tmp"), b"x").unwrap();
        store.catalog().unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("pages")).unwrap().count(),
            3
        );
        assert_eq!(store.pages.range(page_key(7_200_000, 0, 0)..).count(), 0);
        assert_reads_back(&store, -7_200_000, 6, &series);
        assert_reads_back(&store, 0, 1, &series);
        assert_reads_back(&store, 3_600_000, 5, &series);
        assert_reads_back(&store, 7_200_000, 3, &series);
        assert!(store.delete_buckets_before(7_200_000).unwrap() > 0);
        assert!(store.pages.is_empty());
        assert_reads_back(&store, 7_200_000, 3, &series);
        assert!(store.delete_buckets_before(7_200_001).unwrap() > 0);
        assert!(!store.page_file(7_200_000, 3).exists());
        assert!(store.pages2.is_empty());
    }

    #[test]
    fn a_damaged_page_is_skipped_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path());
        let series = mixed_series();
        let refs: Vec<SeriesRef> = series.iter().map(|s| s.0).collect();
        // page3: the first page damaged, the last one cut short.
        store.write_pages_v3(0, 1, &series).unwrap();
        let path = store.page_file(0, 1);
        let mut bad = std::fs::read(&path).unwrap();
        let n = bad.len();
        bad[20] ^= 0xff;
        bad[21] ^= 0x55;
        bad.truncate(n - 3);
        std::fs::write(&path, bad).unwrap();
        let mut n = 0;
        store.read_pages(0, 1, &refs, |_, _| n += 1).unwrap();
        assert!(n > 0 && n < series.len(), "{n} series read");
        // page4: the first page damaged, the others still read.
        store.write_pages(7_200_000, 2, &series).unwrap();
        let path = store.page_file(7_200_000, 2);
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        bad[20] ^= 0xff;
        bad[21] ^= 0x55;
        std::fs::write(&path, &bad).unwrap();
        let mut n = 0;
        store
            .read_pages(7_200_000, 2, &refs, |_, _| n += 1)
            .unwrap();
        assert!(n > 0 && n < series.len(), "{n} series read");
        // Its columns (at the end of the file) cut short: nothing read, no panic.
        let mut cut = good;
        cut.truncate(cut.len() - 3);
        std::fs::write(&path, cut).unwrap();
        let mut n = 0;
        store.parts.write().forget_before(i64::MAX);
        store
            .read_pages(7_200_000, 2, &refs, |_, _| n += 1)
            .unwrap();
        assert_eq!(n, 0);
    }
}
