//! The issue rules, shared by every event store: pure logic over the records of
//! `storage/events.rs`, no storage in sight. A store finds (or creates) the issue an
//! event belongs to, calls [`apply`] on it, and writes back what it returns.
//!
//! - [`new_issue`]: an issue opened by its first event;
//! - [`apply_event`]: an event counted into its issue (latest fields, environments,
//!   releases), and whether it reopened a resolved issue (a regression);
//! - [`take_body_slot`]: body sampling (at most `bodies_per_window` bodies per issue per
//!   window; every event is still counted);
//! - [`name_overflow_issue`]: the per-project issue that events of groups beyond
//!   `max_issues_per_project` count into;
//! - [`set_status`]: triage; [`sort_key`], [`parse_cursor`], [`matches_text`]: listing;
//! - [`event_tags`]: the tag pairs an event counts into its issue's tag values;
//! - [`bounded_body`]: a body cut to the stored size; [`next_series_point`]: the
//!   `calm_error_events_total` sample an event adds.

use crate::storage::events::{Issue, IssueSort, IssueStatus, NewEvent, OVERFLOW_HASH};
use serde_json::Value;

/// Most environments and releases remembered per issue.
pub const MAX_NAMES: usize = 100;

/// The bounds the rules apply (from `[errors]` and `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct IssueRules {
    /// Largest stored event body (JSON bytes).
    pub max_event_bytes: usize,
    /// Most event bodies kept per issue (the oldest are dropped; counts stay exact).
    pub max_events_per_issue: u64,
    /// Most event bodies stored per issue per sampling window.
    pub bodies_per_window: u64,
    /// The sampling window, ms.
    pub sample_window_ms: i64,
    /// Most issues per project (named in the overflow issue's title).
    pub max_issues_per_project: u64,
}

/// What [`apply`] did to an issue, for the store to write back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The event reopened a resolved issue.
    pub regressed: bool,
    /// The event's body is to be stored, at this sequence number of the issue, cut to
    /// these bytes (JSON); `None`: sampled out, counted only.
    pub body: Option<(u64, Vec<u8>)>,
    /// The body at this sequence number is to be dropped (past `max_events_per_issue`).
    pub evict: Option<u64>,
}

/// Counts `ev` into `issue`: `new` when the store just created it ([`new_issue`]),
/// `overflow` when it is the project's overflow issue, `new_user` when the store has
/// not seen the event's user in this issue before.
pub fn apply(
    issue: &mut Issue,
    ev: &NewEvent,
    new: bool,
    overflow: bool,
    new_user: bool,
    rules: &IssueRules,
) -> Applied {
    let regressed = apply_event(issue, ev, new);
    if overflow {
        name_overflow_issue(issue, rules.max_issues_per_project);
    }
    if new_user {
        issue.user_count += 1;
    }
    let mut out = Applied {
        regressed,
        body: None,
        evict: None,
    };
    if take_body_slot(issue, ev.received_ms, rules) {
        let seq = issue.bodies_stored;
        issue.bodies_stored += 1;
        out.body = Some((seq, bounded_body(&ev.body, rules.max_event_bytes)));
        out.evict = seq.checked_sub(rules.max_events_per_issue);
    }
    out
}

/// An issue opened by `ev`, numbered `id` (its count is 0 until [`apply_event`]).
pub fn new_issue(ev: &NewEvent, id: u64) -> Issue {
    Issue {
        id,
        project_id: ev.project_id,
        hash: ev.hash.clone(),
        event_type: ev.summary.event_type.clone(),
        title: ev.summary.title.clone(),
        culprit: ev.summary.culprit.clone(),
        metadata: ev.summary.metadata.clone(),
        level: ev.level.clone(),
        platform: ev.platform.clone(),
        status: IssueStatus::Unresolved,
        first_seen_ms: ev.timestamp_ms,
        last_seen_ms: ev.timestamp_ms,
        count: 0,
        user_count: 0,
        environments: Vec::new(),
        releases: Vec::new(),
        first_release: ev.release.clone(),
        last_release: None,
        last_event_id: ev.event_id.clone(),
        regressed: false,
        times_regressed: 0,
        last_regressed_ms: None,
        status_changed_ms: None,
        bodies_stored: 0,
        sample_window_ms: i64::MIN,
        sample_window_bodies: 0,
    }
}

/// Counts `ev` into `issue`; returns true when this reopened a resolved issue.
pub fn apply_event(issue: &mut Issue, ev: &NewEvent, new: bool) -> bool {
    issue.count += 1;
    issue.first_seen_ms = issue.first_seen_ms.min(ev.timestamp_ms);
    if new || ev.timestamp_ms >= issue.last_seen_ms {
        issue.last_seen_ms = ev.timestamp_ms;
        issue.title = ev.summary.title.clone();
        issue.culprit = ev.summary.culprit.clone();
        issue.metadata = ev.summary.metadata.clone();
        issue.event_type = ev.summary.event_type.clone();
        issue.level = ev.level.clone();
        issue.platform = ev.platform.clone();
        issue.last_event_id = ev.event_id.clone();
        if ev.release.is_some() {
            issue.last_release = ev.release.clone();
        }
    }
    for (list, name) in [
        (&mut issue.environments, &ev.environment),
        (&mut issue.releases, &ev.release),
    ] {
        if let Some(n) = name {
            if !list.contains(n) && list.len() < MAX_NAMES {
                list.push(n.clone());
            }
        }
    }
    if issue.status == IssueStatus::Resolved {
        issue.status = IssueStatus::Unresolved;
        issue.regressed = true;
        issue.times_regressed += 1;
        issue.last_regressed_ms = Some(ev.received_ms);
        issue.status_changed_ms = Some(ev.received_ms);
        return true;
    }
    false
}

/// Gives a project's overflow issue its fixed name (events of all kinds land in it).
pub fn name_overflow_issue(issue: &mut Issue, max_issues_per_project: u64) {
    issue.hash = OVERFLOW_HASH.to_string();
    issue.event_type = "default".to_string();
    issue.title = format!(
        "Events of new issues beyond the limit of {max_issues_per_project} issues in this project (limits.max_issues_per_project)"
    );
    issue.culprit = String::new();
    issue.metadata = serde_json::json!({ "title": issue.title });
}

/// True when the event may keep its body: fewer than `bodies_per_window` bodies
/// stored for this issue in the current window.
///
/// Events of one batch arrive a little out of order (`received_ms` is taken by
/// concurrent handlers), so an event slightly older than the window's start counts
/// in that window; starting a new window for it let one extra body through. Only a
/// clock that went back by more than a whole window starts one.
pub fn take_body_slot(issue: &mut Issue, now_ms: i64, o: &IssueRules) -> bool {
    let since = now_ms.saturating_sub(issue.sample_window_ms);
    if since >= o.sample_window_ms || since <= -o.sample_window_ms {
        issue.sample_window_ms = now_ms;
        issue.sample_window_bodies = 0;
    }
    if issue.sample_window_bodies < o.bodies_per_window {
        issue.sample_window_bodies += 1;
        true
    } else {
        false
    }
}

/// Sets `issue`'s triage status at `now_ms`; resolving clears the regression mark.
pub fn set_status(issue: &mut Issue, status: IssueStatus, now_ms: i64) {
    if issue.status != status {
        issue.status = status;
        issue.status_changed_ms = Some(now_ms);
    }
    if status == IssueStatus::Resolved {
        issue.regressed = false;
    }
}

/// The next point of an issue's `calm_error_events_total{level,environment}` series,
/// after `(count, ts)` (`None`: the first): one more, stamped at the receive time but
/// strictly after the previous point. A burst of more than one event a millisecond on
/// one series therefore stamps points ahead of the clock (by the excess: 3 000 events in
/// 2 s, about 1 s); an instant query at "now" sees the latest count once the clock has
/// caught up, and a range query sees every point.
pub fn next_series_point(prev: Option<(u64, i64)>, received_ms: i64) -> (u64, i64) {
    let (count, last_ts) = prev.unwrap_or((0, i64::MIN));
    (count + 1, received_ms.max(last_ts.saturating_add(1)))
}

/// The key issues are listed by, newest (largest) first.
pub fn sort_key(i: &Issue, sort: IssueSort) -> i64 {
    match sort {
        IssueSort::LastSeen => i.last_seen_ms,
        IssueSort::FirstSeen => i.first_seen_ms,
        IssueSort::Count => i.count.min(i64::MAX as u64) as i64,
    }
}

/// A listing cursor (`<sort key>:<issue id>`).
pub fn parse_cursor(c: &str) -> Option<(i64, u64)> {
    let (k, id) = c.split_once(':')?;
    Some((k.parse().ok()?, id.parse().ok()?))
}

/// Whether `i` matches the lowercase search text `t` (title, culprit, metadata).
pub fn matches_text(i: &Issue, t: &str) -> bool {
    i.title.to_lowercase().contains(t)
        || i.culprit.to_lowercase().contains(t)
        || i.metadata.to_string().to_lowercase().contains(t)
}

/// The tag pairs an event counts into its issue's tag value counts, each key once
/// (the first wins): `level`, `environment`, `release`, `user` (the user key, as
/// Sentry's `id:…`), `server_name`, `browser`/`os`/`runtime` (name and version) and
/// their `.name`, then the event's own `tags`. A NUL in a key becomes U+FFFD (the
/// stores separate key and value with it); empty keys are skipped.
pub fn event_tags(ev: &NewEvent) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: &str| {
        let k = k.replace('\0', "\u{FFFD}");
        if k.is_empty() || out.iter().any(|(o, _)| *o == k) {
            return;
        }
        out.push((k, v.to_string()));
    };
    push("level", &ev.level);
    if let Some(e) = &ev.environment {
        push("environment", e);
    }
    if let Some(r) = &ev.release {
        push("release", r);
    }
    if let Some(u) = &ev.user_key {
        push("user", u);
    }
    if let Some(s) = ev.body.get("server_name").and_then(Value::as_str) {
        push("server_name", s);
    }
    for ctx in ["browser", "os", "runtime"] {
        let Some(c) = ev.body.pointer(&format!("/contexts/{ctx}")) else {
            continue;
        };
        let Some(name) = c.get("name").and_then(Value::as_str) else {
            continue;
        };
        match c.get("version").and_then(Value::as_str) {
            Some(v) => push(ctx, &format!("{name} {v}")),
            None => push(ctx, name),
        }
        push(&format!("{ctx}.name"), name);
    }
    if let Some(tags) = ev.body.get("tags").and_then(Value::as_array) {
        for t in tags {
            if let (Some(k), Some(v)) = (
                t.get(0).and_then(Value::as_str),
                t.get(1).and_then(Value::as_str),
            ) {
                push(k, v);
            }
        }
    }
    out
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The event body as stored: JSON, at most `max` bytes (the bulkiest parts dropped
/// first: frame variables, breadcrumbs, request, extra, contexts, modules).
pub fn bounded_body(body: &Value, max: usize) -> Vec<u8> {
    let bytes = encode(body);
    if bytes.len() <= max {
        return bytes;
    }
    let mut b = body.clone();
    if let Some(excs) = b
        .pointer_mut("/exception/values")
        .and_then(Value::as_array_mut)
    {
        for e in excs {
            if let Some(frames) = e
                .pointer_mut("/stacktrace/frames")
                .and_then(Value::as_array_mut)
            {
                for f in frames.iter_mut().filter_map(Value::as_object_mut) {
                    f.remove("vars");
                    f.remove("pre_context");
                    f.remove("post_context");
                }
            }
        }
    }
    let mut out = encode(&b);
    for key in [
        "breadcrumbs",
        "request",
        "extra",
        "contexts",
        "modules",
        "threads",
        "stacktrace",
        "exception",
    ] {
        if out.len() <= max {
            break;
        }
        if let Some(m) = b.as_object_mut() {
            m.remove(key);
            m.insert("_trimmed".into(), Value::Bool(true));
        }
        out = encode(&b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::summary::summarize;
    use serde_json::json;

    fn event(id: &str, t: i64, release: Option<&str>) -> NewEvent {
        let body = json!({"message": "boom", "event_id": id})
            .as_object()
            .cloned()
            .unwrap_or_default();
        NewEvent {
            project_id: 7,
            event_id: id.into(),
            hash: "h".into(),
            timestamp_ms: t,
            received_ms: t,
            level: "error".into(),
            environment: Some("prod".into()),
            release: release.map(str::to_string),
            platform: "python".into(),
            user_key: None,
            summary: summarize(&body),
            body: Value::Object(body),
        }
    }

    #[test]
    fn event_tags_built_in_first_each_key_once() {
        let mut ev = event("e1", 1000, Some("r1"));
        ev.user_key = Some("id:42".into());
        ev.body = json!({
            "server_name": "web-1",
            "contexts": {
                "browser": {"name": "Chrome", "version": "120.0"},
                "os": {"name": "Linux"},
                "runtime": {"version": "3.12"}
            },
            "tags": [["level", "fake"], ["color", "red"], ["a\u{0}b", "x"], ["", "y"], ["color", "blue"]]
        });
        let tags = event_tags(&ev);
        let pairs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("level", "error"),
                ("environment", "prod"),
                ("release", "r1"),
                ("user", "id:42"),
                ("server_name", "web-1"),
                ("browser", "Chrome 120.0"),
                ("browser.name", "Chrome"),
                ("os", "Linux"),
                ("os.name", "Linux"),
                ("color", "red"),
                ("a\u{FFFD}b", "x"),
            ]
        );
    }

    const RULES: IssueRules = IssueRules {
        max_event_bytes: 1 << 16,
        max_events_per_issue: 2,
        bodies_per_window: 10,
        sample_window_ms: 60_000,
        max_issues_per_project: 5,
    };

    #[test]
    fn an_issue_counts_its_events_and_regresses_once_resolved() {
        let e1 = event("a", 1_000, Some("1.0"));
        let mut i = new_issue(&e1, 3);
        let a = apply(&mut i, &e1, true, false, true, &RULES);
        assert_eq!((a.regressed, a.evict), (false, None));
        assert_eq!(a.body.as_ref().map(|b| b.0), Some(0));
        // An older event counts but does not replace the latest fields.
        let e0 = event("z", 500, Some("0.9"));
        apply(&mut i, &e0, false, false, false, &RULES);
        assert_eq!((i.count, i.first_seen_ms, i.last_seen_ms), (2, 500, 1_000));
        assert_eq!(i.last_event_id, "a");
        assert_eq!(i.releases, ["1.0", "0.9"]);
        assert_eq!(i.user_count, 1);
        set_status(&mut i, IssueStatus::Resolved, 2_000);
        let a = apply(
            &mut i,
            &event("b", 3_000, None),
            false,
            false,
            false,
            &RULES,
        );
        assert!(a.regressed);
        assert_eq!((i.status, i.times_regressed), (IssueStatus::Unresolved, 1));
        assert_eq!(
            a.evict,
            Some(0),
            "the third body pushes out the first of two"
        );
        set_status(&mut i, IssueStatus::Resolved, 4_000);
        assert!(!i.regressed, "resolving clears the regression mark");
    }

    #[test]
    fn the_overflow_issue_is_named_and_series_points_move_forward() {
        let e = event("a", 1_000, None);
        let mut i = new_issue(&e, 9);
        apply(&mut i, &e, true, true, false, &RULES);
        assert_eq!(i.hash, OVERFLOW_HASH);
        assert!(i.title.contains("limit of 5 issues"), "{}", i.title);
        assert_eq!(next_series_point(None, 1_000), (1, 1_000));
        assert_eq!(next_series_point(Some((1, 1_000)), 900), (2, 1_001));
        assert_eq!(next_series_point(Some((2, 1_001)), 5_000), (3, 5_000));
    }
}
