//! Bounds on PromQL text, checked before the parser sees it.
//!
//! promql-parser, the checks it runs on its tree, `prettify`, `Drop` of the tree and
//! Calm's evaluator all recurse once per level of the expression tree. A query nested
//! deeply enough (`((((…x…))))`, `- - - … x`, `a or a or … a`, `abs(abs(…))`) used to
//! overflow the thread's stack, and a stack overflow aborts the whole process: no
//! `catch_unwind` can stop it. So every query is measured first, by a single pass over
//! its characters that cannot recurse, and refused with a 400 naming the limit when it
//! is longer than [`QueryLimits::max_length`] bytes or deeper than
//! [`QueryLimits::max_depth`].
//!
//! ```text
//! depth(group) = operators(group) + 1 + max(depth(inner groups))
//! group        = the whole text, or what is between ( ), [ ] or { }
//! operators    = + - * / % ^ == != < > <= >= and or unless atan2, and each [ ] group
//!                (a range or subquery wraps the expression before it)
//! ```
//! That is an upper bound of the depth of the tree the parser would build: a chain of
//! `n` binary or unary operators at one level is a tree at most `n + 1` deep, whatever
//! the precedence, and each bracket adds at most one node around its contents.
//! Operators inside `{ }` (label matchers) and inside string literals and comments do
//! not count. The bound is cheap (one pass, no allocation but one small stack of
//! counters per open bracket) and errs only towards refusing: a flat chain of 300
//! `or`s counts 301 and is refused at the default depth of 256.
//!
//! The limits are process-wide ([`set`] at start from `[query]`), so that every path
//! that parses PromQL (the query API, `match[]`, `format_query`, `query_exemplars`,
//! rule files and `check rules`, the `query` template function) is bounded through
//! [`super::engine::parse_guarded`] without being handed them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Default longest query text, in bytes (64 KiB).
pub const DEFAULT_MAX_LENGTH: usize = 64 * 1024;
/// Default deepest expression, as measured by [`depth`].
pub const DEFAULT_MAX_DEPTH: usize = 256;

/// Bounds on query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Longest query, in bytes.
    pub max_length: usize,
    /// Deepest expression ([`depth`]).
    pub max_depth: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_length: DEFAULT_MAX_LENGTH,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

static MAX_LENGTH: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_LENGTH);
static MAX_DEPTH: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_DEPTH);

static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Texts [`check`] refused since start (`calm_query_refused_limits_total`).
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Sets the process-wide limits (at start, from the configuration).
pub fn set(l: QueryLimits) {
    MAX_LENGTH.store(l.max_length, Ordering::Relaxed);
    MAX_DEPTH.store(l.max_depth, Ordering::Relaxed);
}

/// The process-wide limits.
pub fn get() -> QueryLimits {
    QueryLimits {
        max_length: MAX_LENGTH.load(Ordering::Relaxed),
        max_depth: MAX_DEPTH.load(Ordering::Relaxed),
    }
}

/// Checks `q` against the process-wide limits; the error names the limit broken.
pub fn check(q: &str) -> Result<(), String> {
    let r = check_with(q, get());
    if r.is_err() {
        REFUSED.fetch_add(1, Ordering::Relaxed);
    }
    r
}

/// Checks `q` against `l`.
pub fn check_with(q: &str, l: QueryLimits) -> Result<(), String> {
    if q.len() > l.max_length {
        return Err(format!(
            "query is {} bytes long, over the limit of {} bytes (query max_length: [query] max_length, --query-max-length)",
            q.len(),
            l.max_length
        ));
    }
    let d = depth(q);
    if d > l.max_depth {
        return Err(format!(
            "query is nested too deeply: depth {d} is over the limit of {} (query max_depth: [query] max_depth, --query-max-depth; each bracket and each operator adds one level)",
            l.max_depth
        ));
    }
    Ok(())
}

/// One open bracket's counters.
#[derive(Clone, Copy)]
struct Group {
    /// The closing character.
    close: u8,
    /// Operators directly inside.
    ops: usize,
    /// Deepest group directly inside.
    inner: usize,
}

impl Group {
    fn new(close: u8) -> Group {
        Group {
            close,
            ops: 0,
            inner: 0,
        }
    }

    fn depth(&self) -> usize {
        self.ops.saturating_add(1).saturating_add(self.inner)
    }
}

/// An upper bound of the depth of the expression tree of `q` (see the module docs).
/// Never recurses; text that does not lex (an unclosed string, stray brackets) is
/// measured as far as it goes, and the parser refuses it afterwards.
pub fn depth(q: &str) -> usize {
    let b = q.as_bytes();
    let mut stack: Vec<Group> = vec![Group::new(0)];
    let mut i = 0;
    // Closes the innermost group into its parent.
    fn close(stack: &mut Vec<Group>) {
        if stack.len() < 2 {
            return;
        }
        if let Some(g) = stack.pop() {
            let d = g.depth();
            if let Some(p) = stack.last_mut() {
                p.inner = p.inner.max(d);
                if g.close == b']' {
                    p.ops = p.ops.saturating_add(1);
                }
            }
        }
    }
    while i < b.len() {
        let c = b[i];
        let in_braces = stack.last().is_some_and(|g| g.close == b'}');
        match c {
            b'"' | b'\'' | b'`' => {
                // A string literal: skip to its end (backslash escapes except in
                // backquoted raw strings).
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' => stack.push(Group::new(b')')),
            b'[' => stack.push(Group::new(b']')),
            b'{' => stack.push(Group::new(b'}')),
            // A closer closes the innermost group of its kind (and any unclosed
            // inside it); a stray one, with no such group open, closes nothing.
            b')' | b']' | b'}' if stack.iter().skip(1).any(|g| g.close == c) => {
                while stack.len() > 1 {
                    let top = stack.last().map_or(0, |g| g.close);
                    close(&mut stack);
                    if top == c {
                        break;
                    }
                }
            }
            b')' | b']' | b'}' => {}
            _ if in_braces => {}
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' => {
                if let Some(g) = stack.last_mut() {
                    g.ops = g.ops.saturating_add(1);
                }
                // `<=`, `>=` are one operator.
                if b.get(i + 1) == Some(&b'=') && (c == b'<' || c == b'>') {
                    i += 1;
                }
            }
            // `==`, `!=` (a lone `=` or `!` does not lex outside braces).
            b'=' | b'!' if b.get(i + 1) == Some(&b'=') => {
                if let Some(g) = stack.last_mut() {
                    g.ops = g.ops.saturating_add(1);
                }
                i += 1;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let w = &b[start..i];
                if ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k.as_bytes()))
                {
                    if let Some(g) = stack.last_mut() {
                        g.ops = g.ops.saturating_add(1);
                    }
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    stack.last().map_or(1, Group::depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_of_ordinary_queries_is_small() {
        assert_eq!(depth("up"), 1);
        assert_eq!(depth("up{job=\"a-b\",x!=\"y\"}"), 2);
        assert_eq!(depth("sum by (job) (rate(x[5m]))"), 5);
        assert_eq!(depth("a + b * c"), 3);
        assert_eq!(depth("x{a=~\"((((((\"} # ((((((( - - -"), 2);
        assert_eq!(depth("a and b or c unless d"), 4);
        assert_eq!(depth("band + orange"), 2);
        assert_eq!(
            depth("histogram_quantile(0.9, sum by (le) (rate(x_bucket{a=\"b\"}[5m])))"),
            6
        );
    }

    #[test]
    fn depth_bounds_every_nesting_shape() {
        let n = 1000;
        let shapes = [
            format!("{}x{}", "(".repeat(n), ")".repeat(n)),
            format!("{}x", "-".repeat(n)),
            format!("{}x", "- ".repeat(n)),
            format!("x{}", " or x".repeat(n)),
            format!("x{}", "+x".repeat(n)),
            format!("{}x{}", "abs(".repeat(n), ")".repeat(n)),
            format!("{}x{}", "max_over_time(".repeat(n), "[1m:])".repeat(n)),
            format!("{}x{}", "sum(".repeat(n), ")".repeat(n)),
            format!("x{}", " AND x".repeat(n)),
            format!("x{}", "^x".repeat(n)),
            format!("{}x", "(".repeat(n)),
            "{".repeat(n),
            format!("{}x", "-(".repeat(n)),
        ];
        for s in shapes {
            assert!(depth(&s) >= n, "{}: {}", &s[..40], depth(&s));
            assert!(check_with(&s, QueryLimits::default()).is_err());
        }
        // Stray closers neither panic nor hide depth.
        assert!(depth(&format!("{}{}x", ")]}".repeat(n), "(".repeat(n))) >= n);
        assert_eq!(depth(""), 1);
        assert_eq!(depth("\"unclosed ((("), 1);
    }

    #[test]
    fn limits_are_named() {
        let l = QueryLimits {
            max_length: 10,
            max_depth: 3,
        };
        let e = check_with("aaaaaaaaaaaaaaaa", l).unwrap_err();
        assert!(e.contains("max_length"), "{e}");
        let e = check_with("((((x))))", l).unwrap_err();
        assert!(e.contains("max_depth"), "{e}");
        assert!(check_with("(x)", l).is_ok());
    }
}
