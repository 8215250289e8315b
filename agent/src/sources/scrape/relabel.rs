//! Prometheus' relabeling (`relabel_configs` on targets, `metric_relabel_configs` on
//! scraped series), with its semantics and defaults (Prometheus 2.42,
//! `model/relabel/relabel.go`):
//!
//! ```text
//! [[scrape.metric_relabel_configs]]
//! source_labels = ["__name__"]   # joined with separator (default ";")
//! regex = "go_.*"                # fully anchored; default "(.*)"
//! action = "drop"                # replace (default), keep, drop, keepequal, dropequal,
//!                                # hashmod, labelmap, labeldrop, labelkeep,
//!                                # lowercase, uppercase
//! target_label = "…"             # replace, hashmod, lowercase, uppercase, *equal
//! replacement = "$1"             # default "$1"; $1, ${1}, $name as Go's regexp.Expand
//! modulus = 8                    # hashmod
//! ```
//! Each rule sees the labels the previous ones left; a keep/drop that drops ends the
//! list. Checked when the config is read, with Prometheus' messages: an action that
//! needs `target_label` without one, `hashmod` without `modulus`, an invalid regex.

use regex::Regex;
use serde::Deserialize;

/// One rule as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: Option<String>,
    pub target_label: Option<String>,
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub replacement: Option<String>,
    pub action: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// A checked, compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    source_labels: Vec<String>,
    separator: String,
    target_label: String,
    regex: Regex,
    modulus: u64,
    replacement: String,
    action: Action,
}

impl RelabelConfig {
    /// Checks the rule and compiles its regex.
    pub fn compile(&self) -> Result<Rule, String> {
        let action = match self
            .action
            .as_deref()
            .unwrap_or("replace")
            .to_ascii_lowercase()
            .as_str()
        {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            other => return Err(format!("unknown relabel action {other:?}")),
        };
        let pattern = self.regex.as_deref().unwrap_or("(.*)");
        let regex = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("invalid regex {pattern:?}: {e}"))?;
        let target_label = self.target_label.clone().unwrap_or_default();
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && target_label.is_empty() {
            return Err(format!(
                "relabel configuration for {} action requires 'target_label' value",
                self.action.as_deref().unwrap_or("replace")
            ));
        }
        if matches!(
            action,
            Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
                | Action::HashMod
        ) && !calm_wire::labels::is_valid_label_name(target_label.as_bytes())
        {
            return Err(format!(
                "{target_label:?} is invalid 'target_label' for this action"
            ));
        }
        let modulus = self.modulus.unwrap_or(0);
        if action == Action::HashMod && modulus == 0 {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (!self.source_labels.is_empty()
                || !target_label.is_empty()
                || modulus != 0
                || self.separator.as_deref().is_some_and(|s| s != ";")
                || self.replacement.as_deref().is_some_and(|r| r != "$1"))
        {
            return Err(format!(
                "{} action requires only 'regex', and no other fields",
                self.action.as_deref().unwrap_or("")
            ));
        }
        if matches!(action, Action::KeepEqual | Action::DropEqual)
            && (self.regex.is_some()
                || modulus != 0
                || self.replacement.as_deref().is_some_and(|r| r != "$1"))
        {
            return Err(format!(
                "{} action requires only 'source_labels' and `target_label`, and no other fields",
                self.action.as_deref().unwrap_or("")
            ));
        }
        Ok(Rule {
            source_labels: self.source_labels.clone(),
            separator: self.separator.clone().unwrap_or_else(|| ";".into()),
            target_label,
            regex,
            modulus,
            replacement: self.replacement.clone().unwrap_or_else(|| "$1".into()),
            action,
        })
    }
}

/// Compiles a list of rules; the error names the rule's position.
pub fn compile_all(what: &str, rules: &[RelabelConfig]) -> Result<Vec<Rule>, String> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| r.compile().map_err(|e| format!("{what}[{i}]: {e}")))
        .collect()
}

fn get<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

fn set(labels: &mut Vec<(String, String)>, name: &str, value: String) {
    match labels.iter_mut().find(|(n, _)| n == name) {
        Some(l) => l.1 = value,
        None => labels.push((name.to_string(), value)),
    }
}

fn del(labels: &mut Vec<(String, String)>, name: &str) {
    labels.retain(|(n, _)| n != name);
}

/// Applies `rules` to `labels` in order. Returns false when the label set is dropped.
/// Labels whose value ends up empty are removed (an empty value is no label).
pub fn process(labels: &mut Vec<(String, String)>, rules: &[Rule]) -> bool {
    for r in rules {
        if !apply(labels, r) {
            return false;
        }
    }
    labels.retain(|(_, v)| !v.is_empty());
    true
}

fn apply(labels: &mut Vec<(String, String)>, r: &Rule) -> bool {
    let val = r
        .source_labels
        .iter()
        .map(|n| get(labels, n))
        .collect::<Vec<_>>()
        .join(&r.separator);
    match r.action {
        Action::Drop => {
            if r.regex.is_match(&val) {
                return false;
            }
        }
        Action::Keep => {
            if !r.regex.is_match(&val) {
                return false;
            }
        }
        Action::DropEqual => {
            if get(labels, &r.target_label) == val {
                return false;
            }
        }
        Action::KeepEqual => {
            if get(labels, &r.target_label) != val {
                return false;
            }
        }
        Action::Replace => {
            let Some(caps) = r.regex.captures(&val) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&r.target_label, &mut target);
            if !calm_wire::labels::is_valid_label_name(target.as_bytes()) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&r.replacement, &mut res);
            if res.is_empty() {
                del(labels, &target);
            } else {
                set(labels, &target, res);
            }
        }
        Action::Lowercase => set(labels, &r.target_label, val.to_lowercase()),
        Action::Uppercase => set(labels, &r.target_label, val.to_uppercase()),
        Action::HashMod => {
            let h = md5(val.as_bytes());
            let mut last = [0u8; 8];
            last.copy_from_slice(&h[8..]);
            let m = u64::from_be_bytes(last) % r.modulus;
            set(labels, &r.target_label, m.to_string());
        }
        Action::LabelMap => {
            let mapped: Vec<(String, String)> = labels
                .iter()
                .filter(|(n, _)| r.regex.is_match(n))
                .map(|(n, v)| {
                    (
                        r.regex.replace(n, r.replacement.as_str()).into_owned(),
                        v.clone(),
                    )
                })
                .collect();
            for (n, v) in mapped {
                set(labels, &n, v);
            }
        }
        Action::LabelDrop => labels.retain(|(n, _)| !r.regex.is_match(n)),
        Action::LabelKeep => labels.retain(|(n, _)| r.regex.is_match(n)),
    }
    true
}

/// MD5 (RFC 1321), for `hashmod` (Prometheus hashes with MD5 and takes the last 8
/// bytes big-endian). Not used for anything secret.
pub fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32)
        .collect();
    let (mut a0, mut b0, mut c0, mut d0) =
        (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f2 = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f2.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, w) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Rule {
        let c: RelabelConfig = toml::from_str(toml_text).expect("toml");
        c.compile().expect("compile")
    }

    fn ls(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn run(labels: &[(&str, &str)], rules: &[Rule]) -> Option<Vec<(String, String)>> {
        let mut l = ls(labels);
        if !process(&mut l, rules) {
            return None;
        }
        l.sort();
        Some(l)
    }

    #[test]
    fn md5_known_answers() {
        let hex = |b: [u8; 16]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            hex(md5(b"The quick brown fox jumps over the lazy dog")),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
    }

    // Cases from Prometheus' model/relabel/relabel_test.go.
    #[test]
    fn prometheus_cases() {
        let r = rule("source_labels = [\"a\"]\nregex = \"f(.*)\"\ntarget_label = \"d\"\nseparator = \";\"\nreplacement = \"ch${1}-ch${1}\"\naction = \"replace\"");
        assert_eq!(
            run(&[("a", "foo"), ("b", "bar"), ("c", "baz")], &[r]),
            Some(ls(&[
                ("a", "foo"),
                ("b", "bar"),
                ("c", "baz"),
                ("d", "choo-choo")
            ]))
        );
        let r1 = rule("source_labels = [\"a\", \"b\"]\nregex = \"f(.*);(.*)r\"\ntarget_label = \"a\"\nreplacement = \"b${1}${2}m\"");
        let r2 = rule("source_labels = [\"c\", \"a\"]\nregex = \"(b).*b(.*)ba(.*)\"\ntarget_label = \"d\"\nreplacement = \"$1$2$2$3\"");
        assert_eq!(
            run(&[("a", "foo"), ("b", "bar"), ("c", "baz")], &[r1, r2]),
            Some(ls(&[
                ("a", "boobam"),
                ("b", "bar"),
                ("c", "baz"),
                ("d", "boooom")
            ]))
        );
        let keep = rule("source_labels = [\"a\"]\nregex = \"f.*\"\naction = \"keep\"");
        assert!(run(&[("a", "boo")], std::slice::from_ref(&keep)).is_none());
        assert!(run(&[("a", "foo")], &[keep]).is_some());
        let drop = rule("source_labels = [\"a\"]\nregex = \".*o.*\"\naction = \"drop\"");
        assert!(run(&[("a", "foo")], &[drop]).is_none());
        // No match: nothing changes; an empty result deletes the target.
        let r = rule("source_labels = [\"a\"]\nregex = \"(f).*\"\ntarget_label = \"${1}\"\nreplacement = \"${1}\"");
        assert_eq!(
            run(&[("a", "foo")], &[r]),
            Some(ls(&[("a", "foo"), ("f", "f")]))
        );
        let r = rule(
            "source_labels = [\"a\"]\nregex = \"foo\"\ntarget_label = \"a\"\nreplacement = \"\"",
        );
        assert_eq!(
            run(&[("a", "foo"), ("b", "x")], &[r]),
            Some(ls(&[("b", "x")]))
        );
        let h = rule(
            "source_labels = [\"c\"]\ntarget_label = \"d\"\nmodulus = 1000\naction = \"hashmod\"",
        );
        assert_eq!(
            run(&[("a", "foo"), ("b", "bar"), ("c", "baz")], &[h]),
            Some(ls(&[
                ("a", "foo"),
                ("b", "bar"),
                ("c", "baz"),
                ("d", "976")
            ]))
        );
        let m = rule("regex = \"__meta_(my.*)\"\nreplacement = \"${1}\"\naction = \"labelmap\"");
        assert_eq!(
            run(
                &[
                    ("__meta_my_bar", "aaa"),
                    ("__meta_my_baz", "bbb"),
                    ("__meta_other", "ccc")
                ],
                &[m]
            ),
            Some(ls(&[
                ("__meta_my_bar", "aaa"),
                ("__meta_my_baz", "bbb"),
                ("__meta_other", "ccc"),
                ("my_bar", "aaa"),
                ("my_baz", "bbb")
            ]))
        );
        let d = rule("regex = \"(b.*)\"\naction = \"labeldrop\"");
        assert_eq!(
            run(&[("a", "foo"), ("b", "bar"), ("c", "baz")], &[d]),
            Some(ls(&[("a", "foo"), ("c", "baz")]))
        );
        let k = rule("regex = \"(b.*)\"\naction = \"labelkeep\"");
        assert_eq!(
            run(&[("a", "foo"), ("b", "bar"), ("c", "baz")], &[k]),
            Some(ls(&[("b", "bar")]))
        );
        let lo =
            rule("source_labels = [\"foo\"]\ntarget_label = \"foo_lower\"\naction = \"lowercase\"");
        let up =
            rule("source_labels = [\"foo\"]\ntarget_label = \"foo_upper\"\naction = \"uppercase\"");
        assert_eq!(
            run(&[("foo", "bAr123Foo")], &[lo, up]),
            Some(ls(&[
                ("foo", "bAr123Foo"),
                ("foo_lower", "bar123foo"),
                ("foo_upper", "BAR123FOO")
            ]))
        );
        let ke = rule("source_labels = [\"foo\"]\ntarget_label = \"bar\"\naction = \"keepequal\"");
        assert!(run(&[("foo", "a"), ("bar", "a")], std::slice::from_ref(&ke)).is_some());
        assert!(run(&[("foo", "a"), ("bar", "b")], &[ke]).is_none());
        let de = rule("source_labels = [\"foo\"]\ntarget_label = \"bar\"\naction = \"dropequal\"");
        assert!(run(&[("foo", "a"), ("bar", "a")], &[de]).is_none());
    }

    #[test]
    fn bad_rules_are_refused() {
        let c: RelabelConfig =
            toml::from_str("action = \"hashmod\"\ntarget_label = \"x\"").expect("toml");
        assert!(c.compile().unwrap_err().contains("modulus"));
        let c: RelabelConfig = toml::from_str("regex = \"(\"").expect("toml");
        assert!(c.compile().unwrap_err().contains("invalid regex"));
        let c: RelabelConfig = toml::from_str("action = \"explode\"").expect("toml");
        assert!(c.compile().is_err());
    }
}
