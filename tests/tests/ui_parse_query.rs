//! `GET|POST /api/v1/parse_query` (the explorer's Tree tab) on a real collector: the
//! syntax tree in Prometheus 3's shape for the 35 expressions of
//! `collector/src/api/parse_query_cases.json` (expected trees written from Prometheus'
//! parser rules and `web/api/v1/translate_ast.go`: no Prometheus 3 binary is installed to
//! compare against, and Debian's 2.42 has no such endpoint), a 400 `bad_data` with the
//! place of a parse error, the `[query]` length and depth limits, and the read scope.

use calm_tests::{workspace_root, Collector};
use serde_json::Value;
use std::time::Duration;

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Status and body of `GET /api/v1/parse_query?query=q` with `token`.
fn get(c: &Collector, q: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = client()
        .get(format!("{}/api/v1/parse_query", c.url()))
        .query(&[("query", q)]);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().expect("GET parse_query");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn parse_query_answers_trees_errors_limits_and_scopes() {
    let c = Collector::start_with_config(
        "[auth]\nagent_tokens = [\"w-tok\"]\nread_tokens = [\"r-tok\"]\n",
        &["--query-max-length", "2000", "--query-max-depth", "64"],
    );
    let read = Some("r-tok");

    // Every expected tree, over HTTP, GET and POST alike.
    let cases: Vec<Value> = serde_json::from_slice(
        &std::fs::read(workspace_root().join("collector/src/api/parse_query_cases.json"))
            .expect("cases file"),
    )
    .expect("cases parse");
    assert!(cases.len() >= 20);
    for case in &cases {
        let q = case["query"].as_str().expect("query");
        let (status, body) = get(&c, q, read);
        assert_eq!(status, 200, "{q}: {body}");
        assert_eq!(body["status"], "success", "{q}");
        assert_eq!(body["data"], case["tree"], "tree of {q}");
    }
    let posted: Value = client()
        .post(format!("{}/api/v1/parse_query", c.url()))
        .bearer_auth("r-tok")
        .form(&[("query", "sum by (job) (rate(x[5m]))")])
        .send()
        .expect("POST")
        .json()
        .expect("json");
    assert_eq!(posted["data"]["type"], "aggregation");
    assert_eq!(posted["data"]["grouping"], serde_json::json!(["job"]));
    assert_eq!(posted["data"]["expr"]["args"][0]["range"], 300000);

    // Parse errors: 400 bad_data, with line:column where it is known.
    for (q, want) in [
        (
            "sum(rate(x[5m])",
            "1:4: parse error: unclosed left parenthesis",
        ),
        ("up{a=\"b\"} $ 1", "1:11: parse error: unexpected character"),
        ("foo bar", "invalid promql query"),
    ] {
        let (status, body) = get(&c, q, read);
        assert_eq!(status, 400, "{q}: {body}");
        assert_eq!(body["errorType"], "bad_data", "{q}");
        let msg = body["error"].as_str().unwrap_or("");
        assert!(msg.contains(want), "{q}: {msg}");
    }
    let (status, body) = client()
        .get(format!("{}/api/v1/parse_query", c.url()))
        .bearer_auth("r-tok")
        .send()
        .map(|r| {
            (
                r.status().as_u16(),
                r.json::<Value>().unwrap_or(Value::Null),
            )
        })
        .expect("GET");
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("\"query\": missing")),
        "{body}"
    );

    // The limits of /api/v1/query.
    let long = format!("x{}", " + x".repeat(600));
    let (status, body) = get(&c, &long, read);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("max_length"),
        "{body}"
    );
    let deep = format!("{}x{}", "(".repeat(100), ")".repeat(100));
    let (status, body) = get(&c, &deep, read);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("max_depth"),
        "{body}"
    );

    // The read scope: no token 401, an agent (write) token 403.
    assert_eq!(get(&c, "up", None).0, 401);
    assert_eq!(get(&c, "up", Some("w-tok")).0, 403);
    assert_eq!(get(&c, "up", Some("nope")).0, 401);
}
