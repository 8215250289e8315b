//! One query's label sets, interned: every distinct result label set is held once, and
//! what was derived from a shared input set (its group labels, the set without its
//! metric name) is remembered by the input's address.
//!
//! A range query evaluates its tree at every step: without this, `sum by (instance)
//! (rate(x[5m]))` over 1,400 steps would copy each series' labels and hash their strings
//! again at every step, and the result rows would be found by comparing label strings.
//! With it, a step costs a pointer lookup per series, and equal label sets are one
//! `Arc`, so rows and groups are found by address.
//!
//! Address keys are sound because an entry keeps a clone of its input: while the entry
//! lives, no other label set can be allocated at that address, and a `Labels` is never
//! changed in place while shared (copy-on-write).

use super::value::Labels;
use hashbrown::{HashMap, HashSet};

/// Where a derivation happens: the output of the query, or an expression node.
pub type Site = usize;

/// The result set of a query: the labels as they are.
pub const SITE_KEEP: Site = 1;
/// The result set of a query: the labels without the metric name.
pub const SITE_DROP_NAME: Site = 2;

/// Interned label sets and derivations of one evaluator (one thread of one query).
#[derive(Debug, Default)]
pub struct Interner {
    sets: HashSet<Labels>,
    derived: HashMap<(Site, usize), (Labels, Labels)>,
}

impl Interner {
    /// The interned set equal to `l` (interning it when new).
    pub fn intern(&mut self, l: Labels) -> Labels {
        if let Some(known) = self.sets.get(&l) {
            return known.clone();
        }
        self.sets.insert(l.clone());
        l
    }

    /// `f(input)`, interned; remembered by `input`'s address when `input` is shared,
    /// so the next step gets it without calling `f`. A set made for this step alone is
    /// not remembered (remembering would keep every step's sets alive).
    pub fn derive(
        &mut self,
        site: Site,
        input: &Labels,
        f: impl FnOnce(&Labels) -> Labels,
    ) -> Labels {
        if !input.is_shared() {
            return self.intern(f(input));
        }
        let key = (site, input.addr());
        if let Some((_, out)) = self.derived.get(&key) {
            return out.clone();
        }
        let out = self.intern(f(input));
        self.derived.insert(key, (input.clone(), out.clone()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn equal_sets_become_one_and_derivations_are_remembered() {
        let mut i = Interner::default();
        let a = set(&[("__name__", "x"), ("job", "a")]);
        let b = set(&[("__name__", "y"), ("job", "a")]);
        let (a2, b2) = (a.clone(), b.clone());
        let mut calls = 0;
        let mut strip = |l: &Labels| {
            calls += 1;
            l.without_name()
        };
        let da = i.derive(SITE_DROP_NAME, &a, &mut strip);
        let db = i.derive(SITE_DROP_NAME, &b, &mut strip);
        // Both lose their name and are then the same set: one allocation.
        assert_eq!(da.addr(), db.addr());
        assert_eq!(da.pairs().collect::<Vec<_>>(), [("job", "a")]);
        // Asked again for a (shared: a2 is alive), f is not called again.
        let again = i.derive(SITE_DROP_NAME, &a, &mut strip);
        assert_eq!(again.addr(), da.addr());
        assert_eq!(calls, 2);
        // A set nobody else holds is derived but not remembered.
        let lone = set(&[("job", "b")]);
        let d = i.derive(SITE_KEEP, &lone, |l| l.clone());
        assert!(d.pairs().eq(lone.pairs()));
        // a2 and b2 kept a and b shared until here.
        assert_eq!((a2.addr(), b2.addr()), (a.addr(), b.addr()));
    }
}
