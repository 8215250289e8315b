//! node_exporter's `textfile` collector: the `*.prom` files of `--textfile-dir`, read
//! as node_exporter 1.5 reads them (checked against it by `agent_textfile`):
//!
//! - only names ending in `.prom`, in name order; anything else is ignored;
//! - a file that does not parse, repeats a `# TYPE`/`# HELP` line, has a `# TYPE`
//!   after its samples, or carries client-side timestamps is skipped whole and sets
//!   `node_textfile_scrape_error 1`; it gets no `node_textfile_mtime_seconds`;
//! - a family in several files is one family: the first file's type wins (samples of
//!   another type are dropped), a series already read is dropped, a missing HELP reads
//!   `"Metric read from <files>"`;
//! - series of a family that lack a label some other series has get it empty;
//! - `node_textfile_mtime_seconds{file="<dir>/<name>"}` (whole seconds) for each file
//!   read.
//!
//! Writers should write to a temporary name and rename into place (atomic); a file
//! read half-written either fails to parse (skipped, error 1) or is read as far as
//! it was written, exactly as with node_exporter.

use crate::family::{Family, Kind, Labels, Str, SAMPLE_NAME};
use calm_wire::exposition::{self, Format, MetricType};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

/// One file's families, or why it was skipped.
fn parse_file(text: &str) -> Result<Vec<Family>, String> {
    check_meta(text)?;
    let fams = exposition::parse(text, Format::Text).map_err(|e| e.to_string())?;
    let mut out: Vec<Family> = Vec::new();
    for f in fams {
        if f.samples.iter().any(|s| s.timestamp_ms.is_some()) {
            return Err("contains unsupported client-side timestamps, skipping entire file".into());
        }
        let kind = match f.kind {
            MetricType::Counter => Kind::Counter,
            MetricType::Gauge => Kind::Gauge,
            MetricType::Histogram => Kind::Histogram,
            MetricType::Summary => Kind::Summary,
            _ => Kind::Untyped,
        };
        let mut fam = Family::new(
            Str::copy(f.name),
            Str::copy(f.help.as_deref().unwrap_or("")),
            kind,
        );
        for s in &f.samples {
            let mut labels: Labels = Vec::with_capacity(s.labels.len() + 1);
            if s.name != f.name {
                labels.push((Str::lit(SAMPLE_NAME), Str::copy(s.name)));
            }
            labels.extend(s.labels.iter().map(|(n, v)| (Str::copy(n), Str::copy(v))));
            fam.samples.push((labels, s.value));
        }
        // The same family again later in the file (no second TYPE/HELP: checked above)
        // is the same family, as prometheus/common's text parser reads it.
        match out.iter_mut().find(|o| o.name == fam.name) {
            Some(o) => o.samples.extend(fam.samples),
            None => out.push(fam),
        }
    }
    Ok(out)
}

/// prometheus/common's text parser refuses a second `# TYPE` or `# HELP` line for a
/// name and a `# TYPE` after the name's samples; Prometheus' scraper (and
/// calm-wire's parser) accept both.
fn check_meta(text: &str) -> Result<(), String> {
    let mut typed = HashSet::new();
    let mut helped = HashSet::new();
    let mut sampled: HashSet<&str> = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix('#') {
            let mut w = rest.split_whitespace();
            let (Some(kw), Some(name)) = (w.next(), w.next()) else {
                continue;
            };
            let set = match kw {
                "TYPE" => &mut typed,
                "HELP" => &mut helped,
                _ => continue,
            };
            if !set.insert(name) {
                return Err(format!(
                    "line {}: second {kw} line for metric name {name:?}",
                    i + 1
                ));
            }
            if kw == "TYPE" && sampled.contains(name) {
                return Err(format!(
                    "line {}: TYPE reported after samples for {name:?}",
                    i + 1
                ));
            }
        } else if !t.is_empty() {
            let end = t
                .find(|c: char| c == '{' || c.is_whitespace())
                .unwrap_or(t.len());
            let name = &t[..end];
            sampled.insert(name);
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    sampled.insert(base);
                }
            }
        }
    }
    Ok(())
}

/// The collector. `dir` is `--textfile-dir` (none: only `node_textfile_scrape_error 0`).
pub fn collect(dir: Option<&Path>) -> Result<Vec<Family>, String> {
    let mut errored = false;
    let mut fams: Vec<Family> = Vec::new();
    let mut files_of: HashMap<Str, Vec<String>> = HashMap::new();
    let mut seen: HashMap<Str, HashSet<Labels>> = HashMap::new();
    let mut mtime = Family::new(
        "node_textfile_mtime_seconds",
        "Unixtime mtime of textfiles successfully read.",
        Kind::Gauge,
    );
    if let Some(dir) = dir {
        let mut names: Vec<String> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".prom"))
                .collect(),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read the textfile directory");
                errored = true;
                Vec::new()
            }
        };
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let shown = path.display().to_string();
            let read = std::fs::File::open(&path).and_then(|mut f| {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut f, &mut s)?;
                Ok((s, f.metadata()?))
            });
            let (text, meta) = match read {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(file = %shown, error = %e, "cannot read textfile");
                    errored = true;
                    continue;
                }
            };
            let parsed = match parse_file(&text) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(file = %shown, error = %e, "textfile skipped");
                    errored = true;
                    continue;
                }
            };
            for f in parsed {
                files_of
                    .entry(f.name.clone())
                    .or_default()
                    .push(shown.clone());
                let seen = seen.entry(f.name.clone()).or_default();
                let idx = match fams.iter().position(|o| o.name == f.name) {
                    Some(i) => i,
                    None => {
                        fams.push(Family::new(f.name.clone(), f.help.clone(), f.kind));
                        fams.len() - 1
                    }
                };
                let into = &mut fams[idx];
                if into.kind != f.kind {
                    continue; // node_exporter's registry drops them ("should be <type>")
                }
                if into.help.is_empty() {
                    into.help = f.help.clone();
                }
                for (mut labels, v) in f.samples {
                    labels.sort();
                    if seen.insert(labels.clone()) {
                        into.samples.push((labels, v));
                    }
                }
            }
            let secs = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs() as f64);
            mtime.push(&[("file", &shown)], secs);
        }
    }
    for f in &mut fams {
        if f.help.is_empty() {
            let files = files_of.get(&f.name).cloned().unwrap_or_default();
            f.help = format!("Metric read from {}", files.join(", ")).into();
        }
        // Every series of a family carries every label name the family uses.
        let names: BTreeSet<Str> = f
            .samples
            .iter()
            .flat_map(|(l, _)| l.iter().map(|(n, _)| n.clone()))
            .filter(|n| n != SAMPLE_NAME && n != "le" && n != "quantile")
            .collect();
        for (labels, _) in &mut f.samples {
            for n in &names {
                if !labels.iter().any(|(x, _)| x == n) {
                    labels.push((n.clone(), Str::lit("")));
                }
            }
            labels.sort();
        }
    }
    fams.push(mtime);
    fams.push(Family::single(
        "node_textfile_scrape_error",
        "1 if there was an error opening or reading a file, 0 otherwise",
        Kind::Gauge,
        if errored { 1.0 } else { 0.0 },
    ));
    Ok(fams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_exporter_rules() {
        assert!(parse_file("# TYPE a gauge\na 1\n# TYPE a gauge\n").is_err());
        assert!(parse_file("a 1\n# TYPE a gauge\n").is_err());
        assert!(parse_file("a 1 1700000000000\n").is_err());
        assert!(parse_file("bad line here\n").is_err());
        let h = parse_file("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 3\nh_count 2\n")
            .expect("histogram");
        assert_eq!(h[0].kind, Kind::Histogram);
        assert_eq!(h[0].samples.len(), 3);
    }
}
