//! `/proc/meminfo` → node_exporter's `meminfo` collector: every field.
//!
//! ```text
//! MemTotal:       16316588 kB     → node_memory_MemTotal_bytes 16708186112
//! Active(anon):     123456 kB     → node_memory_Active_anon_bytes
//! HugePages_Total:       0        → node_memory_HugePages_Total 0   (a count: no unit)
//! ```

use super::num;
use crate::family::{Family, Kind, Str};

/// One gauge family per field.
pub fn parse(text: &str) -> Vec<Family> {
    // By position, one memo for fields in kB and one for counts: a field's names
    // depend on both its key and its unit.
    static KB: super::NameMemo = std::sync::Mutex::new(Vec::new());
    static COUNT: super::NameMemo = std::sync::Mutex::new(Vec::new());
    let mut kb = super::lock_memo(&KB);
    let mut count = super::lock_memo(&COUNT);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut f = line.split_whitespace();
        let (Some(raw), Some(v)) = (f.next(), f.next()) else {
            continue;
        };
        let in_kb = f.next() == Some("kB");
        let build = || {
            let key = raw.trim_end_matches(':');
            // "Active(anon)" → "Active_anon" (only a few fields have parentheses).
            let key: std::borrow::Cow<'_, str> = if key.contains(['(', ')']) {
                key.replace('(', "_").replace(')', "").into()
            } else {
                key.into()
            };
            if in_kb {
                (
                    Str::interned(format_args!("node_memory_{key}_bytes")),
                    Str::interned(format_args!("Memory information field {key}_bytes.")),
                )
            } else {
                (
                    Str::interned(format_args!("node_memory_{key}")),
                    Str::interned(format_args!("Memory information field {key}.")),
                )
            }
        };
        let (name, help, value) = if in_kb {
            let (n, h) = super::memo_names(&mut kb, i, raw, build);
            (n, h, num(v) * 1024.0)
        } else {
            let (n, h) = super::memo_names(&mut count, i, raw, build);
            (n, h, num(v))
        };
        out.push(Family::single(name, help, Kind::Gauge, value));
    }
    out
}

#[cfg(test)]
mod tests {
    fn names(text: &str) -> Vec<(String, String, f64)> {
        super::parse(text)
            .iter()
            .map(|f| (f.name.to_string(), f.help.to_string(), f.samples[0].1))
            .collect()
    }

    #[test]
    fn names_and_units() {
        let want = |n: &str, h: &str, v: f64| (n.to_string(), h.to_string(), v);
        let text = "MemTotal:       16 kB\nActive(anon):  2 kB\nHugePages_Total:       3\n";
        let first = vec![
            want(
                "node_memory_MemTotal_bytes",
                "Memory information field MemTotal_bytes.",
                16384.0,
            ),
            want(
                "node_memory_Active_anon_bytes",
                "Memory information field Active_anon_bytes.",
                2048.0,
            ),
            want(
                "node_memory_HugePages_Total",
                "Memory information field HugePages_Total.",
                3.0,
            ),
        ];
        assert_eq!(names(text), first);
        // Read again (names remembered by position), then with fields moved and a
        // unit changed: the names follow the file, not the memory of it.
        assert_eq!(names(text), first);
        assert_eq!(
            names("HugePages_Total:  4\nMemTotal:  1\nActive(anon):  2 kB\n"),
            vec![
                want(
                    "node_memory_HugePages_Total",
                    "Memory information field HugePages_Total.",
                    4.0,
                ),
                want(
                    "node_memory_MemTotal",
                    "Memory information field MemTotal.",
                    1.0,
                ),
                want(
                    "node_memory_Active_anon_bytes",
                    "Memory information field Active_anon_bytes.",
                    2048.0,
                ),
            ]
        );
    }
}
