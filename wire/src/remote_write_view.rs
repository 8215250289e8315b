//! A borrowed reading of a remote-write `WriteRequest`: the collector's hot path.
//!
//! [`crate::remote_write::decode`] builds prost structs: a `Vec<Label>` and a
//! `Vec<Sample>` per series and a reference-counted slice per label name and value.
//! With one sample per series per request (how Prometheus and Alloy send: one scrape
//! round of a slice of series) those allocations cost more than storing the sample.
//! [`WriteRequestView`] walks the protobuf bytes once and keeps flat vectors of
//! offsets into the decompressed body instead, and it exposes each series' label
//! fields *as sent* ([`WriteRequestView::raw_labels`]) so the TSDB can find a series
//! it already knows by those bytes, without validating, sorting or re-encoding them.
//!
//! Written by hand because no well-kept crate gives a borrowed (zero-copy) decoder for
//! this schema: prost always owns its repeated fields, and the schema is five small
//! messages. Histograms, exemplars and metadata are rare and keep prost's decoding.
//!
//! ```text
//! WriteRequest { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
//! TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2;
//!                repeated Exemplar exemplars = 3; repeated Histogram histograms = 4; }
//! Label        { string name = 1; string value = 2; }
//! Sample       { double value = 1; int64 timestamp = 2; }
//! field        := varint(number << 3 | wire type) payload
//!                 wire type 0 varint, 1 8 bytes, 2 varint(len) bytes, 5 4 bytes
//! ```
//! Unknown fields are skipped as prost skips them; a known field with the wrong wire
//! type, a truncated field or a varint longer than 10 bytes is an error. Groups (wire
//! types 3 and 4, deprecated since proto2) are refused: no remote-write sender writes
//! them.

use crate::prompb::{Exemplar, Histogram, Label, MetricMetadata, Sample, TimeSeries};
use prost::Message;
use std::borrow::Cow;
use std::ops::Range;

/// Why the protobuf could not be read (the snappy layer is checked before).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct ViewError {
    /// What was wrong.
    pub what: &'static str,
    /// Offset into the decompressed body.
    pub at: usize,
}

/// Where one label lies in the body: its whole field (tag to end) and its name and value.
#[derive(Debug, Clone, Copy)]
struct LabelSpan {
    field: (u32, u32),
    name: (u32, u32),
    value: (u32, u32),
}

/// One series of a [`WriteRequestView`]: ranges into the view's flat vectors.
#[derive(Debug, Clone)]
pub struct SeriesView {
    labels: Range<u32>,
    /// True when the label fields follow one another in the body (the usual case), so
    /// the raw label bytes are one slice.
    contiguous: bool,
    samples: Range<u32>,
    histograms: Range<u32>,
}

/// A `WriteRequest` read without copying label bytes. Borrow the decompressed body.
pub struct WriteRequestView<'a> {
    body: &'a [u8],
    series: Vec<SeriesView>,
    labels: Vec<LabelSpan>,
    samples: Vec<Sample>,
    histograms: Vec<Histogram>,
    /// Metric metadata, decoded by prost (a handful per request at most).
    pub metadata: Vec<MetricMetadata>,
}

/// A view's vectors without their contents, kept by a server between requests
/// ([`WriteRequestView::parse_in`], [`WriteRequestView::into_buffers`]): grown by
/// doubling afresh for every request, they were most of the ingest path's page faults
/// (a 2000-series request holds ~300 KB of label spans).
#[derive(Default)]
pub struct ViewBuffers {
    series: Vec<SeriesView>,
    labels: Vec<LabelSpan>,
    samples: Vec<Sample>,
    histograms: Vec<Histogram>,
}

impl ViewBuffers {
    /// Bytes the vectors hold allocated (their capacity), so a pool can refuse to
    /// keep the buffers of an unusually large request.
    pub fn capacity_bytes(&self) -> usize {
        use std::mem::size_of;
        self.series.capacity() * size_of::<SeriesView>()
            + self.labels.capacity() * size_of::<LabelSpan>()
            + self.samples.capacity() * size_of::<Sample>()
            + self.histograms.capacity() * size_of::<Histogram>()
    }
}

impl<'a> WriteRequestView<'a> {
    /// Reads a decompressed `WriteRequest`.
    pub fn parse(body: &'a [u8]) -> Result<WriteRequestView<'a>, ViewError> {
        WriteRequestView::parse_in(body, ViewBuffers::default())
    }

    /// [`WriteRequestView::parse`] into the vectors of an earlier view (emptied first).
    pub fn parse_in(body: &'a [u8], bufs: ViewBuffers) -> Result<WriteRequestView<'a>, ViewError> {
        if body.len() > u32::MAX as usize {
            return Err(ViewError {
                what: "body longer than 4 GiB",
                at: 0,
            });
        }
        // Empty: a `ViewBuffers` comes only from `default` or `into_buffers`.
        let ViewBuffers {
            series,
            labels,
            samples,
            histograms,
        } = bufs;
        let mut v = WriteRequestView {
            body,
            series,
            labels,
            samples,
            histograms,
            metadata: Vec::new(),
        };
        let mut r = Reader { buf: body, pos: 0 };
        while !r.done() {
            let (field, wt) = r.tag()?;
            match (field, wt) {
                (1, WT_LEN) => {
                    let m = r.len_delimited()?;
                    v.parse_series(m)?;
                }
                (3, WT_LEN) => v
                    .metadata
                    .push(r.message::<MetricMetadata>("malformed MetricMetadata")?),
                (1 | 3, _) => return Err(r.wrong_type()),
                _ => r.skip(wt)?,
            }
        }
        Ok(v)
    }

    fn parse_series(&mut self, range: Range<usize>) -> Result<(), ViewError> {
        let body = self.body;
        let mut r = Reader {
            buf: &body[..range.end],
            pos: range.start,
        };
        let l0 = self.labels.len() as u32;
        let s0 = self.samples.len() as u32;
        let h0 = self.histograms.len() as u32;
        let mut contiguous = true;
        let mut last_end: Option<u32> = None;
        while !r.done() {
            let field_start = r.pos;
            let (field, wt) = r.tag()?;
            match (field, wt) {
                (1, WT_LEN) => {
                    let m = r.len_delimited()?;
                    let (name, value) = parse_label(body, m.clone())?;
                    if last_end.is_some_and(|e| e as usize != field_start) {
                        contiguous = false;
                    }
                    last_end = Some(m.end as u32);
                    self.labels.push(LabelSpan {
                        field: (field_start as u32, m.end as u32),
                        name,
                        value,
                    });
                }
                (2, WT_LEN) => {
                    let m = r.len_delimited()?;
                    self.samples.push(parse_sample(body, m)?);
                }
                (3, WT_LEN) => {
                    // Read so malformed exemplars are refused as prost would; not stored.
                    r.message::<Exemplar>("malformed Exemplar")?;
                }
                (4, WT_LEN) => self
                    .histograms
                    .push(r.message::<Histogram>("malformed Histogram")?),
                (1..=4, _) => return Err(r.wrong_type()),
                _ => r.skip(wt)?,
            }
        }
        self.series.push(SeriesView {
            labels: l0..self.labels.len() as u32,
            contiguous,
            samples: s0..self.samples.len() as u32,
            histograms: h0..self.histograms.len() as u32,
        });
        Ok(())
    }

    /// The view's vectors, emptied, for the next [`WriteRequestView::parse_in`].
    pub fn into_buffers(self) -> ViewBuffers {
        let mut b = ViewBuffers {
            series: self.series,
            labels: self.labels,
            samples: self.samples,
            histograms: self.histograms,
        };
        b.series.clear();
        b.labels.clear();
        b.samples.clear();
        b.histograms.clear();
        b
    }

    /// The series, in request order.
    pub fn series(&self) -> &[SeriesView] {
        &self.series
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when the request holds no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// A series' label fields exactly as sent (tags, lengths and bytes, in the order
    /// sent). Two requests that send a series the same way give the same bytes; the
    /// same series sent with its labels in another order gives other bytes.
    pub fn raw_labels(&self, s: &SeriesView) -> Cow<'a, [u8]> {
        let ls = &self.labels[s.labels.start as usize..s.labels.end as usize];
        match (ls.first(), ls.last()) {
            (None, _) | (_, None) => Cow::Borrowed(&[]),
            (Some(a), Some(b)) if s.contiguous => {
                Cow::Borrowed(&self.body[a.field.0 as usize..b.field.1 as usize])
            }
            _ => {
                let mut out = Vec::new();
                for l in ls {
                    out.extend_from_slice(&self.body[l.field.0 as usize..l.field.1 as usize]);
                }
                Cow::Owned(out)
            }
        }
    }

    /// A series' labels as (name, value) byte slices, as sent (unsorted, unchecked).
    pub fn labels(&self, s: &SeriesView) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        let body = self.body;
        self.labels[s.labels.start as usize..s.labels.end as usize]
            .iter()
            .map(move |l| {
                (
                    &body[l.name.0 as usize..l.name.1 as usize],
                    &body[l.value.0 as usize..l.value.1 as usize],
                )
            })
    }

    /// A series' float samples, in the order sent.
    pub fn samples(&self, s: &SeriesView) -> &[Sample] {
        &self.samples[s.samples.start as usize..s.samples.end as usize]
    }

    /// A series' native histogram samples, in the order sent.
    pub fn histograms(&self, s: &SeriesView) -> &[Histogram] {
        &self.histograms[s.histograms.start as usize..s.histograms.end as usize]
    }

    /// One series as an owned prost [`TimeSeries`] (labels copied; exemplars left out),
    /// for validation of a series seen for the first time and for sinks without a
    /// borrowed path.
    pub fn to_timeseries(&self, s: &SeriesView) -> TimeSeries {
        TimeSeries {
            labels: self
                .labels(s)
                .map(|(n, v)| Label {
                    name: bytes::Bytes::copy_from_slice(n),
                    value: bytes::Bytes::copy_from_slice(v),
                })
                .collect(),
            samples: self.samples(s).to_vec(),
            exemplars: Vec::new(),
            histograms: self.histograms(s).to_vec(),
        }
    }
}

/// A span of the body: start and end offsets.
type Span = (u32, u32);

fn parse_label(body: &[u8], range: Range<usize>) -> Result<(Span, Span), ViewError> {
    let mut r = Reader {
        buf: &body[..range.end],
        pos: range.start,
    };
    let (mut name, mut value) = ((0u32, 0u32), (0u32, 0u32));
    while !r.done() {
        let (field, wt) = r.tag()?;
        match (field, wt) {
            // proto3: the last occurrence of a scalar field wins.
            (1, WT_LEN) => {
                let m = r.len_delimited()?;
                name = (m.start as u32, m.end as u32);
            }
            (2, WT_LEN) => {
                let m = r.len_delimited()?;
                value = (m.start as u32, m.end as u32);
            }
            (1 | 2, _) => return Err(r.wrong_type()),
            _ => r.skip(wt)?,
        }
    }
    Ok((name, value))
}

fn parse_sample(body: &[u8], range: Range<usize>) -> Result<Sample, ViewError> {
    let mut r = Reader {
        buf: &body[..range.end],
        pos: range.start,
    };
    let mut s = Sample {
        value: 0.0,
        timestamp: 0,
    };
    while !r.done() {
        let (field, wt) = r.tag()?;
        match (field, wt) {
            (1, WT_I64) => s.value = f64::from_bits(r.fixed64()?),
            (2, WT_VARINT) => s.timestamp = r.varint()? as i64,
            (1 | 2, _) => return Err(r.wrong_type()),
            _ => r.skip(wt)?,
        }
    }
    Ok(s)
}

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_I32: u8 = 5;

/// A cursor over protobuf bytes; `buf` ends where the current message ends.
struct Reader<'b> {
    buf: &'b [u8],
    pos: usize,
}

impl Reader<'_> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self, what: &'static str) -> ViewError {
        ViewError { what, at: self.pos }
    }

    fn wrong_type(&self) -> ViewError {
        self.err("known field with the wrong wire type")
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, ViewError> {
        // Tags and lengths of labels are one byte: the common case first.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                // The tenth byte may only carry the top bit of a u64.
                if i == 9 && b > 1 {
                    return Err(self.err("varint overflows 64 bits"));
                }
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn tag(&mut self) -> Result<(u64, u8), ViewError> {
        let t = self.varint()?;
        if t > u64::from(u32::MAX) {
            return Err(self.err("field tag out of range"));
        }
        let field = t >> 3;
        if field == 0 {
            return Err(self.err("field number 0"));
        }
        Ok((field, (t & 7) as u8))
    }

    fn len_delimited(&mut self) -> Result<Range<usize>, ViewError> {
        let len = self.varint()?;
        let start = self.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("length-delimited field runs past its message"))?;
        self.pos = end;
        Ok(start..end)
    }

    /// The next length-delimited field decoded whole by prost: metadata, exemplars and
    /// histograms are rare, so they are not read in place. An error names `what`.
    fn message<M: Message + Default>(&mut self, what: &'static str) -> Result<M, ViewError> {
        let m = self.len_delimited()?;
        M::decode(&self.buf[m]).map_err(|_| self.err(what))
    }

    fn fixed64(&mut self) -> Result<u64, ViewError> {
        let b = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or_else(|| self.err("truncated 64-bit field"))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        self.pos += 8;
        Ok(u64::from_le_bytes(a))
    }

    fn skip(&mut self, wt: u8) -> Result<(), ViewError> {
        match wt {
            WT_VARINT => self.varint().map(|_| ()),
            WT_I64 => self.fixed64().map(|_| ()),
            WT_LEN => self.len_delimited().map(|_| ()),
            WT_I32 => {
                if self.pos + 4 > self.buf.len() {
                    return Err(self.err("truncated 32-bit field"));
                }
                self.pos += 4;
                Ok(())
            }
            3 | 4 => Err(self.err("protobuf groups are not supported")),
            _ => Err(self.err("invalid wire type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompb::WriteRequest;

    fn request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![Label::new("__name__", "up"), Label::new("job", "x")],
                    samples: vec![
                        Sample {
                            value: 1.5,
                            timestamp: 1_700_000_000_000,
                        },
                        Sample {
                            value: f64::NAN,
                            timestamp: -5,
                        },
                    ],
                    exemplars: vec![],
                    histograms: vec![],
                },
                TimeSeries {
                    labels: vec![Label::new("b", ""), Label::new("a", "é")],
                    samples: vec![],
                    exemplars: vec![],
                    histograms: vec![Histogram {
                        count_int: Some(3),
                        timestamp: 7,
                        ..Default::default()
                    }],
                },
            ],
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: String::new(),
            }],
        }
    }

    fn same(a: &TimeSeries, b: &TimeSeries) -> bool {
        a.labels == b.labels
            && a.histograms == b.histograms
            && a.samples.len() == b.samples.len()
            && a.samples
                .iter()
                .zip(&b.samples)
                .all(|(x, y)| x.timestamp == y.timestamp && x.value.to_bits() == y.value.to_bits())
    }

    #[test]
    fn reads_what_prost_reads() {
        let req = request();
        let bytes = req.encode_to_vec();
        let v = WriteRequestView::parse(&bytes).unwrap();
        assert_eq!(v.len(), 2);
        for (s, ts) in v.series().iter().zip(&req.timeseries) {
            assert!(same(&v.to_timeseries(s), ts));
        }
        assert_eq!(v.metadata, req.metadata);
    }

    #[test]
    fn reused_buffers_read_the_next_request_alone() {
        let big = request().encode_to_vec();
        let mut small_req = request();
        small_req.timeseries.truncate(1);
        small_req.timeseries[0].samples.truncate(1);
        let small = small_req.encode_to_vec();
        let first = WriteRequestView::parse(&big).unwrap();
        let bufs = first.into_buffers();
        assert!(bufs.capacity_bytes() > 0);
        let v = WriteRequestView::parse_in(&small, bufs).unwrap();
        assert_eq!(v.len(), 1);
        assert!(same(
            &v.to_timeseries(&v.series()[0]),
            &small_req.timeseries[0]
        ));
        assert_eq!(v.samples(&v.series()[0]).len(), 1);
    }

    #[test]
    fn raw_labels_are_the_label_fields_as_sent() {
        let req = request();
        let bytes = req.encode_to_vec();
        let v = WriteRequestView::parse(&bytes).unwrap();
        let one = TimeSeries {
            labels: req.timeseries[0].labels.clone(),
            ..Default::default()
        };
        let expect = one.encode_to_vec();
        assert_eq!(&*v.raw_labels(&v.series()[0]), &expect[..]);
    }

    #[test]
    fn interleaved_labels_give_the_same_raw_bytes() {
        // labels, sample, label: the raw key is the two label fields back to back.
        let l1 = Label::new("__name__", "up").encode_to_vec();
        let l2 = Label::new("job", "x").encode_to_vec();
        let smp = Sample {
            value: 2.0,
            timestamp: 9,
        }
        .encode_to_vec();
        let mut ts = Vec::new();
        for (tag, m) in [(0x0a, &l1), (0x12, &smp), (0x0a, &l2)] {
            ts.push(tag);
            ts.push(m.len() as u8);
            ts.extend_from_slice(m);
        }
        let mut body = vec![0x0a, ts.len() as u8];
        body.extend_from_slice(&ts);
        let v = WriteRequestView::parse(&body).unwrap();
        let s = &v.series()[0];
        let mut expect = vec![0x0a, l1.len() as u8];
        expect.extend_from_slice(&l1);
        expect.push(0x0a);
        expect.push(l2.len() as u8);
        expect.extend_from_slice(&l2);
        assert_eq!(&*v.raw_labels(s), &expect[..]);
        assert_eq!(v.samples(s)[0].timestamp, 9);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let bytes = request().encode_to_vec();
        for cut in 0..bytes.len() {
            let _ = WriteRequestView::parse(&bytes[..cut]);
        }
        assert!(WriteRequestView::parse(&[0xff; 64]).is_err());
        // Field 1 as a varint: wrong wire type.
        assert!(WriteRequestView::parse(&[0x08, 0x01]).is_err());
        // Unknown fields are skipped.
        assert_eq!(
            WriteRequestView::parse(&[0x28, 0x01, 0x31, 0, 0, 0, 0, 0, 0, 0, 0])
                .unwrap()
                .len(),
            0
        );
    }
}
