//! A hook for other rooms (alerts) to hear about issues as events arrive, without
//! the store knowing who listens: [`NotifyingStore`] wraps any [`EventStore`] and
//! broadcasts an [`IssueEvent`] for every newly counted event, saying whether it
//! opened a new issue or reopened a resolved one (the store decides both).
//! Added by the alerts work (issue 6); kept to this file plus one line in mod.rs.

use crate::storage::events::{
    BulkStatus, EventPage, EventStore, Ingested, Issue, IssuePage, IssueQuery, IssueStatus,
    NewEvent, StoreFuture, TagCounts,
};
use std::sync::Arc;
use tokio::sync::broadcast;

/// What an event did to its issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueEventKind {
    /// It opened a new issue.
    New,
    /// It reopened a resolved issue.
    Regression,
    /// It was counted into an existing open issue.
    Event,
}

/// One counted (non-duplicate) event, as the alerts room sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueEvent {
    /// New issue, regression or plain event.
    pub kind: IssueEventKind,
    /// The project.
    pub project_id: u64,
    /// The issue.
    pub issue_id: u64,
    /// The issue's title (from this event).
    pub title: String,
    /// The event's level.
    pub level: String,
    /// When it was received, ms.
    pub received_ms: i64,
}

/// An [`EventStore`] that broadcasts [`IssueEvent`]s after each successful ingest.
/// Sending never waits: a listener that lags loses the oldest events (broadcast).
pub struct NotifyingStore {
    inner: Arc<dyn EventStore>,
    tx: broadcast::Sender<IssueEvent>,
}

impl NotifyingStore {
    /// Wraps `inner`; events go to `tx`'s subscribers.
    pub fn new(inner: Arc<dyn EventStore>, tx: broadcast::Sender<IssueEvent>) -> NotifyingStore {
        NotifyingStore { inner, tx }
    }
}

impl EventStore for NotifyingStore {
    fn ingest(&self, event: NewEvent) -> StoreFuture<'_, Ingested> {
        Box::pin(async move {
            let (project_id, title, level, received_ms) = (
                event.project_id,
                event.summary.title.clone(),
                event.level.clone(),
                event.received_ms,
            );
            let r = self.inner.ingest(event).await?;
            if !r.duplicate {
                let kind = if r.new_issue {
                    IssueEventKind::New
                } else if r.regressed {
                    IssueEventKind::Regression
                } else {
                    IssueEventKind::Event
                };
                // No subscriber is fine (no error rules configured).
                let _ = self.tx.send(IssueEvent {
                    kind,
                    project_id,
                    issue_id: r.issue_id,
                    title,
                    level,
                    received_ms,
                });
            }
            Ok(r)
        })
    }

    fn issues(&self, query: IssueQuery) -> StoreFuture<'_, IssuePage> {
        self.inner.issues(query)
    }

    fn issue(&self, id: u64) -> StoreFuture<'_, Option<Issue>> {
        self.inner.issue(id)
    }

    fn events(
        &self,
        issue_id: u64,
        limit: usize,
        cursor: Option<String>,
    ) -> StoreFuture<'_, EventPage> {
        self.inner.events(issue_id, limit, cursor)
    }

    fn set_status(
        &self,
        id: u64,
        status: IssueStatus,
        now_ms: i64,
    ) -> StoreFuture<'_, Option<Issue>> {
        self.inner.set_status(id, status, now_ms)
    }

    fn set_statuses(
        &self,
        ids: Vec<u64>,
        status: IssueStatus,
        now_ms: i64,
    ) -> StoreFuture<'_, BulkStatus> {
        self.inner.set_statuses(ids, status, now_ms)
    }

    fn tags(&self, issue_id: u64) -> StoreFuture<'_, Vec<TagCounts>> {
        self.inner.tags(issue_id)
    }
}
