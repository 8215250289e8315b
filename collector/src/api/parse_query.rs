//! `GET|POST /api/v1/parse_query`: a query's syntax tree as JSON, in the shape of
//! Prometheus 3's endpoint (`web/api/v1/translate_ast.go`), which its UI's "Explain"
//! tree and the built-in explorer's Tree tab draw.
//!
//! ```text
//! GET /api/v1/parse_query?query=sum by (job) (rate(x[5m]))
//!   → {"status":"success","data":{"type":"aggregation","op":"sum","grouping":["job"],
//!      "without":false,"param":null,"expr":{"type":"call","func":{"name":"rate",…},
//!      "args":[{"type":"matrixSelector","name":"x","range":300000,…}]}}}
//! GET /api/v1/parse_query?query=sum(
//!   → 400 {"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": …"}
//! ```
//!
//! Node types and fields (durations and offsets in milliseconds; `timestamp` is the
//! `@` time in milliseconds or null, `startOrEnd` is `"start"`, `"end"` or null):
//!
//! ```text
//! vectorSelector  name, matchers[{type,name,value}], offset, timestamp, startOrEnd
//! matrixSelector  the same, plus range
//! subquery        expr, range, step (0 = the default), offset, timestamp, startOrEnd
//! aggregation     op, expr, param, grouping[], without
//! binaryExpr      op, lhs, rhs, bool, matching ({card,labels,on,include} between two
//!                 instant vectors, else null)
//! call            func{name,argTypes,variadic,returnType}, args[]
//! numberLiteral   val (a string: "1", "0.5", "+Inf", "NaN")
//! stringLiteral   val
//! parenExpr       expr
//! unaryExpr       op, expr
//! ```
//! As in Prometheus, a selector written with a name outside the braces lists a
//! `__name__` equality matcher last, and `-1` is the number literal `"-1"`.
//!
//! Known differences from Prometheus (the parser is promql-parser, not Prometheus'):
//! a unary `+` before a non-literal (`+x`) is dropped by the parser instead of being a
//! `unaryExpr` with op `"+"`; fields of Prometheus' experimental features (duration
//! expressions, `anchored`/`smoothed` selectors, `fill` modifiers) are not emitted.
//!
//! The query goes through the same length and depth limits as `/api/v1/query`
//! ([`crate::promql::engine::parse`]) and the same read scope; parsing and the walk
//! over the tree run on the query pool's large stacks.

use super::params::Params;
use super::{on_query_pool, ApiError};
use crate::promql;
use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::response::{IntoResponse, Response};
use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AtModifier, Expr, LabelModifier, Offset, VectorMatchCardinality, VectorSelector,
};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

/// `GET|POST /api/v1/parse_query`.
pub async fn parse_query(RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = Params::parse(q.as_deref(), &body);
    let r = on_query_pool(move || -> Result<Vec<u8>, ApiError> {
        let q = p.required("query")?;
        let expr = promql::engine::parse(q).map_err(|e| with_position(q, e))?;
        let body = json!({"status": "success", "data": translate(&expr)});
        // Serialised (and the tree dropped) here, on the pool's stack: both recurse.
        serde_json::to_vec(&body)
            .map_err(|e| ApiError::internal(format!("cannot render the tree: {e}")))
    })
    .await;
    match r {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// A parse error with its place in the query (`line:column`, 1-based, as Prometheus
/// writes `1:5: parse error: …`) where it can be found: promql-parser's messages carry
/// none. An unclosed bracket points at the bracket; an error of the lexer (an unexpected
/// or unterminated character) at the end of the shortest prefix that gives the same
/// error. Other grammar errors ("invalid promql query") stay without a place.
fn with_position(q: &str, e: promql::Error) -> ApiError {
    let promql::Error::BadData(msg) = e else {
        return ApiError::from(e);
    };
    let detail = msg
        .strip_prefix("invalid parameter \"query\": ")
        .unwrap_or(&msg);
    match position(q, detail) {
        Some(at) => {
            let (line, col) = line_col(q, at);
            ApiError::bad_data(format!(
                "invalid parameter \"query\": {line}:{col}: parse error: {detail}"
            ))
        }
        None => ApiError::bad_data(msg),
    }
}

/// The byte offset a parse error `msg` is about, when it can be found.
fn position(q: &str, msg: &str) -> Option<usize> {
    if let Some(what) = msg.strip_prefix("unclosed left ") {
        let open = match what {
            "parenthesis" => b'(',
            "bracket" => b'[',
            "brace" => b'{',
            _ => return None,
        };
        return unclosed(q, open);
    }
    if !(msg.starts_with("unexpected character") || msg.starts_with("unterminated")) {
        return None;
    }
    // The lexer stops at its first error: find the shortest prefix that has it.
    let ends: Vec<usize> = q.char_indices().map(|(i, c)| i + c.len_utf8()).collect();
    let fails = |end: usize| {
        promql_parser::parser::lex::lexer(&q[..end])
            .err()
            .is_some_and(|m| m == msg)
    };
    let first = ends.partition_point(|&end| !fails(end));
    let end = *ends.get(first)?;
    q[..end].char_indices().last().map(|(i, _)| i)
}

/// The offset of the innermost `open` bracket left unclosed at the end of `q`, outside
/// strings and comments.
fn unclosed(q: &str, open: u8) -> Option<usize> {
    let b = q.as_bytes();
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
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
            c @ (b'(' | b'[' | b'{') => stack.push((c, i)),
            b')' | b']' | b'}' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    stack
        .iter()
        .rev()
        .find(|(c, _)| *c == open)
        .map(|&(_, at)| at)
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_col(q: &str, at: usize) -> (usize, usize) {
    let before = &q[..at.min(q.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// The tree as Prometheus' `translateAST` writes it.
pub fn translate(e: &Expr) -> Value {
    match e {
        Expr::Aggregate(a) => {
            let (grouping, without) = match &a.modifier {
                Some(LabelModifier::Include(l)) => (l.labels.clone(), false),
                Some(LabelModifier::Exclude(l)) => (l.labels.clone(), true),
                None => (Vec::new(), false),
            };
            json!({
                "type": "aggregation",
                "op": a.op.to_string(),
                "expr": translate(&a.expr),
                "param": a.param.as_deref().map(translate),
                "grouping": grouping,
                "without": without,
            })
        }
        Expr::Binary(b) => {
            let vectors =
                b.lhs.value_type() == ValueType::Vector && b.rhs.value_type() == ValueType::Vector;
            let modifier = b.modifier.as_ref();
            let matching = vectors.then(|| {
                let (card, include) = match modifier.map(|m| &m.card) {
                    None | Some(VectorMatchCardinality::OneToOne) => ("one-to-one", Vec::new()),
                    Some(VectorMatchCardinality::ManyToOne(l)) => ("many-to-one", l.labels.clone()),
                    Some(VectorMatchCardinality::OneToMany(l)) => ("one-to-many", l.labels.clone()),
                    Some(VectorMatchCardinality::ManyToMany) => ("many-to-many", Vec::new()),
                };
                let (labels, on) = match modifier.and_then(|m| m.matching.as_ref()) {
                    Some(LabelModifier::Include(l)) => (l.labels.clone(), true),
                    Some(LabelModifier::Exclude(l)) => (l.labels.clone(), false),
                    None => (Vec::new(), false),
                };
                json!({"card": card, "labels": labels, "on": on, "include": include})
            });
            json!({
                "type": "binaryExpr",
                "op": b.op.to_string(),
                "lhs": translate(&b.lhs),
                "rhs": translate(&b.rhs),
                "matching": matching,
                "bool": modifier.is_some_and(|m| m.return_bool),
            })
        }
        Expr::Call(c) => json!({
            "type": "call",
            "func": {
                "name": c.func.name,
                "argTypes": c.func.arg_types.iter().map(value_type).collect::<Vec<_>>(),
                "variadic": c.func.variadic,
                "returnType": value_type(&c.func.return_type),
            },
            "args": c.args.args.iter().map(|a| translate(a)).collect::<Vec<_>>(),
        }),
        Expr::MatrixSelector(m) => {
            let mut v = selector("matrixSelector", &m.vs);
            v["range"] = json!(millis(&m.range));
            v
        }
        Expr::VectorSelector(vs) => selector("vectorSelector", vs),
        Expr::Subquery(s) => {
            let (timestamp, start_or_end) = at(&s.at);
            json!({
                "type": "subquery",
                "expr": translate(&s.expr),
                "range": millis(&s.range),
                "offset": offset(&s.offset),
                "step": s.step.as_ref().map_or(0, millis),
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::NumberLiteral(n) => json!({"type": "numberLiteral", "val": go_float(n.val)}),
        Expr::StringLiteral(s) => json!({"type": "stringLiteral", "val": s.val}),
        Expr::Paren(p) => json!({"type": "parenExpr", "expr": translate(&p.expr)}),
        Expr::Unary(u) => json!({"type": "unaryExpr", "op": "-", "expr": translate(&u.expr)}),
        // The parser never builds extension nodes; they are a hook for its users.
        Expr::Extension(_) => Value::Null,
    }
}

fn selector(kind: &str, vs: &VectorSelector) -> Value {
    let (timestamp, start_or_end) = at(&vs.at);
    json!({
        "type": kind,
        "name": vs.name.as_deref().unwrap_or(""),
        "matchers": matchers(vs.name.as_deref(), &vs.matchers),
        "offset": offset(&vs.offset),
        "timestamp": timestamp,
        "startOrEnd": start_or_end,
    })
}

/// The matchers as written, then (as Prometheus' parser adds it) `__name__="name"` for a
/// name written outside the braces.
fn matchers(name: Option<&str>, ms: &Matchers) -> Value {
    let mut out: Vec<Value> = ms
        .matchers
        .iter()
        .map(|m| json!({"name": m.name, "value": m.value, "type": match_op(&m.op)}))
        .collect();
    if let Some(n) = name {
        out.push(json!({"name": "__name__", "value": n, "type": "="}));
    }
    Value::Array(out)
}

fn match_op(op: &MatchOp) -> &'static str {
    match op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Re(_) => "=~",
        MatchOp::NotRe(_) => "!~",
    }
}

fn value_type(t: &ValueType) -> &'static str {
    match t {
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
        ValueType::Vector => "vector",
        ValueType::Matrix => "matrix",
    }
}

fn millis(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => millis(d),
        Some(Offset::Neg(d)) => -millis(d),
    }
}

/// `(timestamp, startOrEnd)` of an `@` modifier.
fn at(a: &Option<AtModifier>) -> (Value, Value) {
    match a {
        None => (Value::Null, Value::Null),
        Some(AtModifier::Start) => (Value::Null, json!("start")),
        Some(AtModifier::End) => (Value::Null, json!("end")),
        Some(AtModifier::At(t)) => {
            let ms = match t.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => millis(&d),
                Err(e) => -millis(&e.duration()),
            };
            (json!(ms), Value::Null)
        }
    }
}

/// A float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` writes it: the shortest
/// digits that read back the same, never an exponent.
fn go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's Display is also shortest-round-trip and never uses an exponent.
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected trees, written by hand from Prometheus' parser rules and
    /// `translate_ast.go` (no Prometheus 3 binary is installed to compare against:
    /// Debian's 2.42 has no `/api/v1/parse_query`).
    const CASES: &str = include_str!("parse_query_cases.json");

    #[test]
    fn trees_have_prometheus_shape() {
        let cases: Vec<Value> = serde_json::from_str(CASES).expect("cases parse");
        assert!(cases.len() >= 20, "{} cases", cases.len());
        for c in cases {
            let q = c["query"].as_str().expect("query");
            let e = promql::engine::parse(q).unwrap_or_else(|e| panic!("{q}: {e:?}"));
            assert_eq!(translate(&e), c["tree"], "tree of {q}");
        }
    }

    #[test]
    fn parse_errors_say_where() {
        let msg = |q: &str| {
            let e = promql::engine::parse(q).expect_err(q);
            with_position(q, e).message
        };
        assert!(
            msg("sum(rate(x[5m])").contains(": 1:4: parse error: unclosed left parenthesis"),
            "{}",
            msg("sum(rate(x[5m])")
        );
        assert!(
            msg("up{a=\"b\"} $ 1").contains(": 1:11: parse error: unexpected character"),
            "{}",
            msg("up{a=\"b\"} $ 1")
        );
        assert!(
            msg("x +\n  y{a=\"b}").contains(": 2:7: parse error: unterminated"),
            "{}",
            msg("x +\n  y{a=\"b}")
        );
        // Without a place to point at, the parser's message as it is.
        assert!(
            msg("foo bar").ends_with("\"query\": invalid promql query"),
            "{}",
            msg("foo bar")
        );
    }

    #[test]
    fn go_float_format() {
        for (v, s) in [
            (1.0, "1"),
            (-1.0, "-1"),
            (0.5, "0.5"),
            (1e21, "1000000000000000000000"),
            (1e-7, "0.0000001"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(go_float(v), s);
        }
    }
}
