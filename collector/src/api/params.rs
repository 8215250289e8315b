//! Reading API parameters: query string plus form body, times and durations.
//!
//! ```text
//! time=2015-07-01T20:10:51.781Z | time=1435781451.781
//! step=15s | step=15 | step=0.5
//! match[]=up&match[]=process_start_time_seconds{job="prometheus"}
//! ```

use super::ApiError;
use crate::tsdb::index::{MatchOp, Matcher};
use promql_parser::parser::Expr;

/// All parameters of a request, in order, repeated keys kept.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Parses a query string and an optional form body.
    pub fn parse(query: Option<&str>, form: &[u8]) -> Params {
        let mut v: Vec<(String, String)> = Vec::new();
        if let Some(q) = query {
            v.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        v.extend(form_urlencoded::parse(form).into_owned());
        Params(v)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key`, or the 400 Prometheus gives when it is missing.
    pub fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key)
            .ok_or_else(|| ApiError::bad_data(format!("invalid parameter \"{key}\": missing")))
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parses a Prometheus API time (RFC 3339 or Unix seconds) into ms.
pub fn parse_time(s: &str) -> Result<i64, ApiError> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            return Ok((f * 1000.0).round() as i64);
        }
    }
    match s {
        // Prometheus' min/max time spellings.
        "-292273086-05-16T16:47:06Z" => return Ok(i64::MIN / 2),
        "292277025-08-18T07:12:54.999999999Z" => return Ok(i64::MAX / 2),
        _ => {}
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|_| ApiError::bad_data(format!("cannot parse {s:?} to a valid timestamp")))
}

/// Parses a duration (`15s`, `1m`) or a float number of seconds into ms.
pub fn parse_duration(s: &str) -> Result<i64, ApiError> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            return Ok((f * 1000.0).round() as i64);
        }
    }
    promql_parser::util::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| ApiError::bad_data(format!("cannot parse {s:?} to a valid duration")))
}

/// Converts parsed PromQL matchers (and the metric name) into TSDB matchers.
pub fn to_matchers(
    name: Option<&str>,
    ms: &promql_parser::label::Matchers,
) -> Result<Vec<Matcher>, ApiError> {
    if !ms.or_matchers.is_empty() {
        return Err(ApiError::bad_data(
            "`or` inside a selector is not supported",
        ));
    }
    let mut out = Vec::with_capacity(ms.matchers.len() + 1);
    if let Some(n) = name {
        out.push(Matcher::equal("__name__", n));
    }
    for m in &ms.matchers {
        use promql_parser::label::MatchOp as P;
        let tm = match &m.op {
            P::Equal => Matcher::equal(&m.name, &m.value),
            P::NotEqual => Matcher {
                name: m.name.clone(),
                value: m.value.clone(),
                op: MatchOp::NotEqual,
            },
            P::Re(_) => Matcher::regex(&m.name, &m.value, false).map_err(|e| {
                ApiError::bad_data(format!("invalid regular expression {:?}: {e}", m.value))
            })?,
            P::NotRe(_) => Matcher::regex(&m.name, &m.value, true).map_err(|e| {
                ApiError::bad_data(format!("invalid regular expression {:?}: {e}", m.value))
            })?,
        };
        out.push(tm);
    }
    if out.iter().all(|m| m.matches("")) {
        return Err(ApiError::bad_data(
            "vector selector must contain at least one non-empty matcher",
        ));
    }
    Ok(out)
}

/// Parses a `match[]` series selector.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, ApiError> {
    match crate::promql::engine::parse_guarded(s) {
        Ok(Expr::VectorSelector(vs)) => to_matchers(vs.name.as_deref(), &vs.matchers),
        Ok(_) => Err(ApiError::bad_data(format!(
            "{s:?} is not a series selector"
        ))),
        Err(e) => Err(ApiError::bad_data(format!(
            "invalid parameter \"match[]\": {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1435781451.781").unwrap(), 1_435_781_451_781);
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z").unwrap(),
            1_435_781_451_781
        );
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration("15s").unwrap(), 15_000);
        assert_eq!(parse_duration("0.5").unwrap(), 500);
        let p = Params::parse(Some("match[]=a&match[]=b&x=1"), b"y=2");
        assert_eq!(p.all("match[]"), vec!["a", "b"]);
        assert_eq!(p.get("y"), Some("2"));
    }
}
