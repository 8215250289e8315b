//! `/proc/vmstat` → node_exporter's `vmstat` collector: untyped `node_vmstat_<field>`
//! for the fields its default `--collector.vmstat.fields` selects.
//!
//! ```text
//! pgfault 19339430     → node_vmstat_pgfault 19339430
//! ```

use super::num;
use crate::family::{Family, Kind};
use std::sync::OnceLock;

/// node_exporter 1.5's `--collector.vmstat.fields` default.
pub const FIELDS: &str = r"^(oom_kill|pgpg|pswp|pg.*fault).*";

/// The selected fields.
pub fn parse(text: &str) -> Vec<Family> {
    static RE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let Some(re) = RE.get_or_init(|| regex::Regex::new(FIELDS).ok()).as_ref() else {
        return Vec::new();
    };
    static MEMO: super::FieldMemo = std::sync::Mutex::new(Vec::new());
    let mut memo = super::lock_memo(&MEMO);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut f = line.split_whitespace();
        let (Some(k), Some(v)) = (f.next(), f.next()) else {
            continue;
        };
        if super::memo_selected(&mut memo, i, k, |k| re.is_match(k)) {
            out.push(Family::single(
                format!("node_vmstat_{k}"),
                format!("/proc/vmstat information field {k}."),
                Kind::Untyped,
                num(v),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn selected() {
        let f = super::parse("nr_free_pages 5\npgfault 7\npgmajfault 1\noom_kill 0\npswpin 2\n");
        let n: Vec<_> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            n,
            vec![
                "node_vmstat_pgfault",
                "node_vmstat_pgmajfault",
                "node_vmstat_oom_kill",
                "node_vmstat_pswpin"
            ]
        );
    }
}
