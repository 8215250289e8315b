//! Bad queries get Prometheus' error type and status, never a dropped connection or a
//! panic; the collector keeps answering afterwards.

use calm_tests::collector::Collector;
use calm_tests::now_ms;
use calm_tests::write::{request, series, RemoteWriter};

/// A bad request: path, parameters, expected status and Prometheus error type.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16, &'a str);

#[test]
fn bad_queries_get_prometheus_errors() {
    let c = Collector::start_with(&["--max-body-bytes", "33554432"]);
    let t = now_ms();
    // 3000 series × 4 samples: enough for the sample-limit case below with a small limit.
    let batch: Vec<_> = (0..3000)
        .map(|i| {
            series(
                "load_metric",
                &[("i", &i.to_string())],
                &[
                    (t - 45_000, 1.0),
                    (t - 30_000, 2.0),
                    (t - 15_000, 3.0),
                    (t, 4.0),
                ],
            )
        })
        .collect();
    let ans = RemoteWriter::new(&c.write_url())
        .send(&request(batch))
        .expect("write");
    assert!(ans.ok(), "{ans:?}");
    let api = c.api();
    let ts = format!("{}", t as f64 / 1000.0);
    let cases: Vec<Case> = vec![
        (
            "/api/v1/query",
            vec![("query", "sum(".into())],
            400,
            "bad_data",
        ),
        (
            "/api/v1/query",
            vec![("query", "no_such_function(up)".into())],
            400,
            "bad_data",
        ),
        (
            "/api/v1/query",
            vec![("query", "rate(load_metric)".into())],
            400,
            "bad_data",
        ),
        (
            "/api/v1/query",
            vec![("query", "abs(\"x\")".into())],
            400,
            "bad_data",
        ),
        // promql-parser panics on these durations; the collector must answer 400.
        (
            "/api/v1/query",
            vec![("query", "load_metric[5e22]".into())],
            400,
            "bad_data",
        ),
        (
            "/api/v1/query",
            vec![("query", "load_metric offset 1e400".into())],
            400,
            "bad_data",
        ),
        (
            "/api/v1/series",
            vec![("match[]", "load_metric[5e22]".into())],
            400,
            "bad_data",
        ),
        (
            "/api/v1/query",
            vec![("query", "up".into()), ("time", "yesterday".into())],
            400,
            "bad_data",
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "load_metric".into()),
                ("start", "0".into()),
                ("end", "11001".into()),
                ("step", "1".into()),
            ],
            400,
            "bad_data",
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "load_metric".into()),
                ("start", "10".into()),
                ("end", "0".into()),
                ("step", "1".into()),
            ],
            400,
            "bad_data",
        ),
    ];
    for (path, params, status, kind) in &cases {
        let (got, body) = api.call(false, path, params).expect("request");
        assert_eq!(got, *status, "{path} {params:?}: {body}");
        assert_eq!(body["status"], "error", "{body}");
        assert_eq!(body["errorType"], *kind, "{path} {params:?}: {body}");
        assert!(!body["error"].as_str().unwrap_or("").is_empty(), "{body}");
    }
    // Still answering, with data.
    let (got, body) = api
        .call(
            false,
            "/api/v1/query",
            &[("query", "count(load_metric)".into()), ("time", ts)],
        )
        .expect("query");
    assert_eq!(got, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], "3000", "{body}");
}

#[test]
fn a_query_past_the_sample_limit_gets_an_execution_error() {
    let c = Collector::start_with_config("max_query_samples = 1000\n", &[]);
    let t = now_ms();
    let batch: Vec<_> = (0..600)
        .map(|i| {
            series(
                "many",
                &[("i", &i.to_string())],
                &[(t - 15_000, 1.0), (t, 2.0)],
            )
        })
        .collect();
    assert!(RemoteWriter::new(&c.write_url())
        .send(&request(batch))
        .expect("write")
        .ok());
    let (got, body) = c
        .api()
        .call(
            false,
            "/api/v1/query",
            &[
                ("query", "sum(count_over_time(many[1m]))".into()),
                ("time", format!("{}", t as f64 / 1000.0)),
            ],
        )
        .expect("query");
    assert_eq!(got, 422, "{body}");
    assert_eq!(body["errorType"], "execution", "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("samples"),
        "{body}"
    );
}
