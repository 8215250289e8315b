//! [`EventStore`]: issues and their events, behind a trait so that the embedded
//! (sled, `errors/sled_store.rs`) and cluster (PostgreSQL) stores are interchangeable.
//! The records are plain data; the rules that change them (a new issue, an event
//! applied, a regression, body sampling) are in `errors/issue.rs`, shared by every
//! store.

use super::StorageError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;

/// A boxed future, as the store's methods return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// An issue's triage state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueStatus {
    /// Open (new, or regressed after a resolve).
    Unresolved,
    /// Marked fixed; a new event makes it a regression.
    Resolved,
    /// Muted: new events are counted, the status stays.
    Ignored,
}

impl IssueStatus {
    /// Parses `unresolved`, `resolved` or `ignored`.
    pub fn parse(s: &str) -> Option<IssueStatus> {
        match s {
            "unresolved" => Some(IssueStatus::Unresolved),
            "resolved" => Some(IssueStatus::Resolved),
            "ignored" => Some(IssueStatus::Ignored),
            _ => None,
        }
    }
}

/// One event to store, already normalised, grouped and summarised.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The project it was sent to.
    pub project_id: u64,
    /// 32 hex digits.
    pub event_id: String,
    /// The grouping hash.
    pub hash: String,
    /// Event time (clamped), ms since the epoch.
    pub timestamp_ms: i64,
    /// Receive time, ms since the epoch.
    pub received_ms: i64,
    /// Normalised level.
    pub level: String,
    /// Environment, if any.
    pub environment: Option<String>,
    /// Release, if any.
    pub release: Option<String>,
    /// Platform.
    pub platform: String,
    /// What identifies the user (id, email, username or IP), if any.
    pub user_key: Option<String>,
    /// The summary, which names a new issue and renames an existing one.
    pub summary: crate::errors::summary::Summary,
    /// The normalised event body kept for the events list.
    pub body: Value,
}

/// What storing an event did.
#[derive(Debug, Clone)]
pub struct Ingested {
    /// The issue it belongs to.
    pub issue_id: u64,
    /// The event had been stored before (same project and event id): not counted again.
    pub duplicate: bool,
    /// It opened a new issue.
    pub new_issue: bool,
    /// It reopened a resolved issue.
    pub regressed: bool,
    /// Events of this issue, level and environment so far (the counter series value).
    pub series_count: u64,
    /// The counter sample's timestamp (strictly increasing per series), ms.
    pub series_ts_ms: i64,
    /// The event's body was stored (false: counted only, its body sampled out).
    pub body_stored: bool,
    /// The project had `max_issues_per_project` issues: the event, of a new group, was
    /// counted into the project's overflow issue.
    pub overflow_issue: bool,
    /// The project had `max_environments_per_project` environments: the event's new
    /// environment was counted as [`OVERFLOW_ENVIRONMENT`].
    pub overflow_environment: bool,
}

impl Ingested {
    /// An event stored before (same project and event id), of issue `issue_id`: not
    /// counted again.
    pub fn duplicate(issue_id: u64) -> Ingested {
        Ingested {
            issue_id,
            duplicate: true,
            new_issue: false,
            regressed: false,
            series_count: 0,
            series_ts_ms: 0,
            body_stored: false,
            overflow_issue: false,
            overflow_environment: false,
        }
    }
}

/// The environment that events of environments beyond the per-project limit count in.
pub const OVERFLOW_ENVIRONMENT: &str = "other_environments";
/// The grouping hash of a project's overflow issue.
pub const OVERFLOW_HASH: &str = "calm:overflow";

/// An issue: events grouped by hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Issue {
    /// Unique id.
    pub id: u64,
    /// Its project.
    pub project_id: u64,
    /// The grouping hash.
    pub hash: String,
    /// `error` or `default`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Title of the latest event.
    pub title: String,
    /// Culprit of the latest event.
    pub culprit: String,
    /// Metadata of the latest event.
    pub metadata: Value,
    /// Level of the latest event.
    pub level: String,
    /// Platform of the latest event.
    pub platform: String,
    /// Triage state.
    pub status: IssueStatus,
    /// Earliest event time, ms.
    pub first_seen_ms: i64,
    /// Latest event time, ms.
    pub last_seen_ms: i64,
    /// Events counted (exact).
    pub count: u64,
    /// Distinct users affected.
    pub user_count: u64,
    /// Environments seen (bounded).
    pub environments: Vec<String>,
    /// Releases seen (bounded).
    pub releases: Vec<String>,
    /// Release of the first event.
    pub first_release: Option<String>,
    /// Release of the latest event.
    pub last_release: Option<String>,
    /// Latest event id.
    pub last_event_id: String,
    /// True after a resolved issue received a new event (until resolved again).
    pub regressed: bool,
    /// How often it regressed.
    pub times_regressed: u64,
    /// When it last regressed, ms.
    pub last_regressed_ms: Option<i64>,
    /// When its status last changed, ms.
    pub status_changed_ms: Option<i64>,
    /// Event bodies stored so far (under a storm only a sample of events keeps its
    /// body; `count` stays exact).
    #[serde(default)]
    pub bodies_stored: u64,
    /// Start of the current body-sampling window, ms (receive time).
    #[serde(default)]
    pub sample_window_ms: i64,
    /// Bodies stored in the current window.
    #[serde(default)]
    pub sample_window_bodies: u64,
}

/// Issue list ordering (newest/largest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueSort {
    /// By latest event.
    LastSeen,
    /// By first event.
    FirstSeen,
    /// By event count.
    Count,
}

/// A query for issues.
#[derive(Debug, Clone)]
pub struct IssueQuery {
    /// Only this project.
    pub project_id: Option<u64>,
    /// Only this status.
    pub status: Option<IssueStatus>,
    /// Only issues seen in this environment.
    pub environment: Option<String>,
    /// Only issues seen in this release.
    pub release: Option<String>,
    /// Case-insensitive text in title, culprit or metadata.
    pub text: Option<String>,
    /// Ordering.
    pub sort: IssueSort,
    /// Page size.
    pub limit: usize,
    /// Continue after this cursor (from a previous page).
    pub cursor: Option<String>,
}

/// One page of issues.
#[derive(Debug, Clone)]
pub struct IssuePage {
    /// The issues.
    pub issues: Vec<Issue>,
    /// The cursor of the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// One page of an issue's events, newest first.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// Event bodies.
    pub events: Vec<Value>,
    /// The cursor of the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// The key that tags beyond an issue's `max_tag_keys_per_issue` are counted under
/// (their value: the tag's key).
pub const OTHER_TAG_KEY: &str = "calm:other_keys";
/// The value that values beyond a tag key's `max_tag_values_per_key` are counted as.
pub const OTHER_TAG_VALUE: &str = "calm:other";

/// How often one value of one tag key was seen in an issue's events (exact, kept at
/// ingest whatever the body sampling keeps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagValueCount {
    /// The value.
    pub value: String,
    /// Events with this value.
    pub count: u64,
    /// Earliest such event (event time), ms.
    pub first_seen_ms: i64,
    /// Latest such event (event time), ms.
    pub last_seen_ms: i64,
}

/// One tag key of an issue with its values, most frequent first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagCounts {
    /// The key (or [`OTHER_TAG_KEY`]).
    pub key: String,
    /// Its values, most frequent first (ties: by value); [`OTHER_TAG_VALUE`] counts
    /// the values beyond the limit.
    pub values: Vec<TagValueCount>,
}

impl TagCounts {
    /// Events with this key (the sum of its values' counts).
    pub fn total(&self) -> u64 {
        self.values.iter().map(|v| v.count).sum()
    }
}

/// What a bulk status change did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkStatus {
    /// Issues whose status changed.
    pub changed: Vec<u64>,
    /// Issues that had that status already.
    pub unchanged: Vec<u64>,
    /// Ids of no issue.
    pub missing: Vec<u64>,
}

impl BulkStatus {
    /// Sets `issue`'s status (the rule: [`crate::errors::issue::set_status`]) and files
    /// its id under changed or unchanged; `true` when the stored issue must be written.
    pub fn apply(&mut self, issue: &mut Issue, status: IssueStatus, now_ms: i64) -> bool {
        let before = issue.clone();
        crate::errors::issue::set_status(issue, status, now_ms);
        if before.status == status {
            self.unchanged.push(issue.id);
        } else {
            self.changed.push(issue.id);
        }
        *issue != before
    }
}

/// Where issues and events live.
pub trait EventStore: Send + Sync + 'static {
    /// Stores an event, counting it into its issue (created if new); resolves once
    /// durable. An event id seen before in the project is not counted again.
    fn ingest(&self, event: NewEvent) -> StoreFuture<'_, Ingested>;
    /// Lists issues.
    fn issues(&self, query: IssueQuery) -> StoreFuture<'_, IssuePage>;
    /// One issue.
    fn issue(&self, id: u64) -> StoreFuture<'_, Option<Issue>>;
    /// An issue's events, newest first.
    fn events(
        &self,
        issue_id: u64,
        limit: usize,
        cursor: Option<String>,
    ) -> StoreFuture<'_, EventPage>;
    /// Sets an issue's status; `None` when there is no such issue.
    fn set_status(
        &self,
        id: u64,
        status: IssueStatus,
        now_ms: i64,
    ) -> StoreFuture<'_, Option<Issue>>;
    /// Sets the status of several issues at once (one durable write); says which
    /// changed, which had that status already and which do not exist.
    fn set_statuses(
        &self,
        ids: Vec<u64>,
        status: IssueStatus,
        now_ms: i64,
    ) -> StoreFuture<'_, BulkStatus>;
    /// An issue's tag value counts (key order: by key), kept exact at ingest; empty
    /// for an issue without tags or no such issue.
    fn tags(&self, issue_id: u64) -> StoreFuture<'_, Vec<TagCounts>>;
}
