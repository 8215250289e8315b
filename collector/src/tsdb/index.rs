//! The inverted index: label pair → postings (sorted series refs), kept in memory.
//!
//! Built from the series the head knows (rebuilt at start from the sled `series`
//! tree). It answers selections by label matchers the way Prometheus does:
//!
//! ```text
//! name="v"    postings(name, v)                  name=""   all − ∪ postings(name, *)
//! name!="v"   all − postings(name, v)
//! name=~"re"  ∪ postings(name, v) for v matching ^(?:re)$ (+ series without name if "" matches)
//! name!~"re"  all − (the above)
//! ```
//! Positive matchers are intersected first; negative ones are subtracted after.

use super::SeriesRef;
use std::collections::{BTreeMap, HashMap, HashSet};

/// How a matcher compares a label value.
#[derive(Debug, Clone)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex(regex::Regex),
    NotRegex(regex::Regex),
}

/// One label matcher, as in `name=~"value"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub op: MatchOp,
}

impl Matcher {
    /// `name="value"`.
    pub fn equal(name: &str, value: &str) -> Matcher {
        Matcher {
            name: name.into(),
            value: value.into(),
            op: MatchOp::Equal,
        }
    }

    /// A regex matcher; the pattern is anchored at both ends as in PromQL.
    pub fn regex(name: &str, pattern: &str, negate: bool) -> Result<Matcher, regex::Error> {
        let re = regex::Regex::new(&format!("^(?s:{pattern})$"))?;
        Ok(Matcher {
            name: name.into(),
            value: pattern.into(),
            op: if negate {
                MatchOp::NotRegex(re)
            } else {
                MatchOp::Regex(re)
            },
        })
    }

    /// True when a label value (`""` for an absent label) passes this matcher.
    pub fn matches(&self, v: &str) -> bool {
        match &self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex(re) => re.is_match(v),
            MatchOp::NotRegex(re) => !re.is_match(v),
        }
    }
}

/// Label pair → postings, plus the list of all series.
#[derive(Default)]
pub struct Index {
    postings: HashMap<Box<str>, BTreeMap<Box<str>, Vec<SeriesRef>>>,
    all: Vec<SeriesRef>,
}

fn insert_sorted(v: &mut Vec<SeriesRef>, r: SeriesRef) {
    // New refs are mostly the largest yet, so this is usually a push.
    match v.last() {
        Some(&last) if last < r => v.push(r),
        None => v.push(r),
        _ => {
            if let Err(pos) = v.binary_search(&r) {
                v.insert(pos, r);
            }
        }
    }
}

impl Index {
    /// Adds a series with its (name, value) pairs.
    pub fn add<'a>(&mut self, r: SeriesRef, labels: impl Iterator<Item = (&'a str, &'a str)>) {
        insert_sorted(&mut self.all, r);
        for (n, v) in labels {
            let values = match self.postings.get_mut(n) {
                Some(m) => m,
                None => self.postings.entry(n.into()).or_default(),
            };
            match values.get_mut(v) {
                Some(p) => insert_sorted(p, r),
                None => {
                    values.insert(v.into(), vec![r]);
                }
            }
        }
    }

    /// Removes the series `dead`, given with the (name, value) pairs of their labels;
    /// label names and values left without series go too, so the label APIs stop
    /// listing them. One pass over each touched postings list, however many of its
    /// series go (removing them one by one would be quadratic in a large list).
    pub fn remove_all<'a>(
        &mut self,
        dead: &HashSet<SeriesRef>,
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) {
        self.all.retain(|r| !dead.contains(r));
        let mut touched: HashSet<(&str, &str)> = HashSet::new();
        for (n, v) in pairs {
            if !touched.insert((n, v)) {
                continue;
            }
            let Some(values) = self.postings.get_mut(n) else {
                continue;
            };
            if let Some(p) = values.get_mut(v) {
                p.retain(|r| !dead.contains(r));
                if p.is_empty() {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                self.postings.remove(n);
            }
        }
    }

    /// Number of series with `name="value"`.
    pub fn postings_len(&self, name: &str, value: &str) -> usize {
        self.postings
            .get(name)
            .and_then(|m| m.get(value))
            .map_or(0, Vec::len)
    }

    /// Number of series indexed.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// All label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.postings.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    /// All values of one label name, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.postings
            .get(name)
            .map(|m| m.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default()
    }

    /// Union of the postings of every value of `name` that passes `pred`.
    fn union_where(&self, name: &str, pred: impl Fn(&str) -> bool) -> Vec<SeriesRef> {
        let Some(values) = self.postings.get(name) else {
            return Vec::new();
        };
        let lists: Vec<&Vec<SeriesRef>> = values
            .iter()
            .filter(|(v, _)| pred(v))
            .map(|(_, p)| p)
            .collect();
        union_many(&lists)
    }

    /// Series refs (sorted) whose labels pass every matcher.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        let mut include: Option<Vec<SeriesRef>> = None;
        let mut exclude: Vec<Vec<SeriesRef>> = Vec::new();
        let intersect = |set: Vec<SeriesRef>, include: &mut Option<Vec<SeriesRef>>| {
            *include = Some(match include.take() {
                None => set,
                Some(cur) => intersect_sorted(&cur, &set),
            });
        };
        for m in matchers {
            let empty_matches = m.matches("");
            // The set of series whose value (present, non-empty) matches.
            let matching_present = || match &m.op {
                MatchOp::Equal => self
                    .postings
                    .get(m.name.as_str())
                    .and_then(|vals| vals.get(m.value.as_str()))
                    .cloned()
                    .unwrap_or_default(),
                _ => self.union_where(&m.name, |v| m.matches(v)),
            };
            if empty_matches {
                // Matches series without the label too: subtract those that have the
                // label with a failing value.
                let failing = self.union_where(&m.name, |v| !m.matches(v));
                if !failing.is_empty() {
                    exclude.push(failing);
                }
            } else {
                intersect(matching_present(), &mut include);
            }
        }
        let mut out = include.unwrap_or_else(|| self.all.clone());
        for ex in exclude {
            out = subtract_sorted(&out, &ex);
        }
        out
    }
}

/// Sorted intersection.
pub fn intersect_sorted(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Sorted difference `a − b`.
pub fn subtract_sorted(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j < b.len() && b[j] == x {
            continue;
        }
        out.push(x);
    }
    out
}

fn union_many(lists: &[&Vec<SeriesRef>]) -> Vec<SeriesRef> {
    match lists {
        [] => Vec::new(),
        [one] => (*one).clone(),
        _ => {
            let mut all: Vec<SeriesRef> = lists.iter().flat_map(|l| l.iter().copied()).collect();
            all.sort_unstable();
            all.dedup();
            all
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        let mut ix = Index::default();
        ix.add(1, [("__name__", "up"), ("job", "a")].into_iter());
        ix.add(2, [("__name__", "up"), ("job", "b")].into_iter());
        ix.add(3, [("__name__", "up")].into_iter());
        ix.add(4, [("__name__", "down"), ("job", "a")].into_iter());
        ix
    }

    #[test]
    fn removed_series_leave_postings_names_and_values() {
        let mut ix = index();
        let dead: HashSet<SeriesRef> = [2, 4].into_iter().collect();
        ix.remove_all(
            &dead,
            [
                ("__name__", "up"),
                ("job", "b"),
                ("__name__", "down"),
                ("job", "a"),
            ]
            .into_iter(),
        );
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.label_values("__name__"), vec!["up"]);
        assert_eq!(ix.label_values("job"), vec!["a"]);
        assert_eq!(ix.select(&[Matcher::equal("job", "a")]), vec![1]);
        assert_eq!(ix.select(&[Matcher::equal("__name__", "up")]), vec![1, 3]);
        let dead: HashSet<SeriesRef> = [1].into_iter().collect();
        ix.remove_all(&dead, [("__name__", "up"), ("job", "a")].into_iter());
        assert_eq!(ix.label_names(), vec!["__name__"]);
    }

    #[test]
    fn matchers_follow_prometheus_semantics() {
        let ix = index();
        let up = Matcher::equal("__name__", "up");
        assert_eq!(ix.select(std::slice::from_ref(&up)), vec![1, 2, 3]);
        assert_eq!(
            ix.select(&[up.clone(), Matcher::equal("job", "a")]),
            vec![1]
        );
        // job="" selects series without a job label.
        assert_eq!(ix.select(&[up.clone(), Matcher::equal("job", "")]), vec![3]);
        let ne = Matcher {
            name: "job".into(),
            value: "a".into(),
            op: MatchOp::NotEqual,
        };
        assert_eq!(ix.select(&[up.clone(), ne]), vec![2, 3]);
        let re = Matcher::regex("job", "a|b", false).unwrap();
        assert_eq!(ix.select(&[up.clone(), re]), vec![1, 2]);
        let nre = Matcher::regex("job", "a.*", true).unwrap();
        assert_eq!(ix.select(&[up.clone(), nre]), vec![2, 3]);
        // Anchored: "u" does not match "up".
        let partial = Matcher::regex("__name__", "u", false).unwrap();
        assert!(ix.select(&[partial]).is_empty());
        let dotstar = Matcher::regex("job", ".*", false).unwrap();
        assert_eq!(ix.select(&[up, dotstar]), vec![1, 2, 3]);
    }
}
