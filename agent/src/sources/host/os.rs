//! `/etc/os-release` (or `/usr/lib/os-release`) → node_exporter's `os` collector.
//!
//! ```text
//! PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"   → node_os_info{pretty_name=…,…} 1
//! VERSION_ID="12"                                → node_os_version{id,id_like,name} 12
//! ```

use crate::family::{Family, Kind};
use std::collections::BTreeMap;
use std::path::Path;

/// `KEY=value` pairs, values unquoted as a shell would (the os-release(5) subset).
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            let inner = &v[1..v.len() - 1];
            let mut s = String::with_capacity(inner.len());
            let mut esc = false;
            for c in inner.chars() {
                if esc || c != '\\' {
                    s.push(c);
                    esc = false;
                } else {
                    esc = true;
                }
            }
            s
        } else {
            v.to_string()
        };
        out.insert(k.trim().to_string(), v);
    }
    out
}

/// The leading `major[.minor]` of VERSION_ID as a number (node_exporter's regexp
/// `^[0-9]+\.?[0-9]*`), none when it does not start with a digit.
fn version_number(v: &str) -> Option<f64> {
    let end = v
        .char_indices()
        .scan(false, |dot, (i, c)| {
            if c.is_ascii_digit() {
                Some(i + 1)
            } else if c == '.' && !*dot && i > 0 {
                *dot = true;
                Some(i + 1)
            } else {
                None
            }
        })
        .last()?;
    v[..end].trim_end_matches('.').parse().ok()
}

/// `node_os_info` and `node_os_version` from os-release text.
pub fn parse(text: &str) -> Vec<Family> {
    let env = parse_env(text);
    let g = |k: &str| env.get(k).map(String::as_str).unwrap_or("");
    let mut info = Family::new(
        "node_os_info",
        "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.",
        Kind::Gauge,
    );
    info.push(
        &[
            ("build_id", g("BUILD_ID")),
            ("id", g("ID")),
            ("id_like", g("ID_LIKE")),
            ("image_id", g("IMAGE_ID")),
            ("image_version", g("IMAGE_VERSION")),
            ("name", g("NAME")),
            ("pretty_name", g("PRETTY_NAME")),
            ("variant", g("VARIANT")),
            ("variant_id", g("VARIANT_ID")),
            ("version", g("VERSION")),
            ("version_codename", g("VERSION_CODENAME")),
            ("version_id", g("VERSION_ID")),
        ],
        1.0,
    );
    let mut out = vec![info];
    if let Some(v) = version_number(g("VERSION_ID")).filter(|v| *v > 0.0) {
        let mut f = Family::new(
            "node_os_version",
            "Metric containing the major.minor part of the OS version.",
            Kind::Gauge,
        );
        f.push(
            &[
                ("id", g("ID")),
                ("id_like", g("ID_LIKE")),
                ("name", g("NAME")),
            ],
            v,
        );
        out.push(f);
    }
    out
}

/// The collector: the first of the two files that exists, as node_exporter.
pub fn collect(root: &Path) -> Result<Vec<Family>, String> {
    for p in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(s) = super::read_file(root.join(p)) {
            return Ok(parse(&s));
        }
    }
    Err("no os-release file".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn info_and_version() {
        let f = super::parse(
            "PRETTY_NAME=\"Ubuntu 22.04.3 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nID_LIKE=debian\n",
        );
        assert_eq!(
            f[0].samples[0].0[6],
            ("pretty_name".into(), "Ubuntu 22.04.3 LTS".into())
        );
        assert_eq!(f[1].samples[0].1, 22.04);
        assert_eq!(super::version_number("12"), Some(12.0));
        assert_eq!(super::version_number("rolling"), None);
    }
}
