//! A relayed Sentry request as it waits in the spool: enough to replay it to the
//! collector exactly as the SDK addressed it.
//!
//! ```text
//! u8  endpoint   1 = /api/{project}/envelope/, 2 = /api/{project}/store/
//! u64 project    big-endian, from the request path
//! u16 auth_len   big-endian · auth   the SDK's X-Sentry-Auth (or Authorization: Sentry …) value
//! u16 query_len  big-endian · query  the SDK's query string (may carry sentry_key)
//! ..  body       the decompressed request body
//! ```

/// Which Sentry endpoint the SDK posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/api/{project}/envelope/`.
    Envelope = 1,
    /// `/api/{project}/store/` (legacy: one event as JSON).
    Store = 2,
}

/// One relayed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEntry {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The project id from the path.
    pub project: u64,
    /// The SDK's auth header value, empty if it sent none.
    pub auth: String,
    /// The SDK's query string, empty if none.
    pub query: String,
    /// The request body, decompressed.
    pub body: Vec<u8>,
}

impl EventEntry {
    /// The spool payload.
    pub fn encode(&self) -> Vec<u8> {
        let auth = truncate(&self.auth);
        let query = truncate(&self.query);
        let mut out = Vec::with_capacity(13 + auth.len() + query.len() + self.body.len());
        out.push(self.endpoint as u8);
        out.extend_from_slice(&self.project.to_be_bytes());
        out.extend_from_slice(&(auth.len() as u16).to_be_bytes());
        out.extend_from_slice(auth);
        out.extend_from_slice(&(query.len() as u16).to_be_bytes());
        out.extend_from_slice(query);
        out.extend_from_slice(&self.body);
        out
    }

    /// Reads a spool payload; `None` if it is not one (a corrupt entry).
    pub fn decode(b: &[u8]) -> Option<EventEntry> {
        let endpoint = match *b.first()? {
            1 => Endpoint::Envelope,
            2 => Endpoint::Store,
            _ => return None,
        };
        let project = u64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
        let (auth, rest) = take_str(b.get(9..)?)?;
        let (query, body) = take_str(rest)?;
        Some(EventEntry {
            endpoint,
            project,
            auth,
            query,
            body: body.to_vec(),
        })
    }

    /// The project of a spool payload without decoding the rest; `None` if it is not
    /// one.
    pub fn project_of(b: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(b.get(1..9)?.try_into().ok()?))
    }

    /// The collector path to post to.
    pub fn path(&self) -> String {
        match self.endpoint {
            Endpoint::Envelope => format!("/api/{}/envelope/", self.project),
            Endpoint::Store => format!("/api/{}/store/", self.project),
        }
    }
}

fn truncate(s: &str) -> &[u8] {
    // Header values this long are refused by the relay before they get here.
    &s.as_bytes()[..s.len().min(u16::MAX as usize)]
}

fn take_str(b: &[u8]) -> Option<(String, &[u8])> {
    let n = u16::from_be_bytes(b.get(..2)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(b.get(2..2 + n)?).ok()?.to_string();
    Some((s, &b[2 + n..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_truncated_payloads() {
        let e = EventEntry {
            endpoint: Endpoint::Store,
            project: 42,
            auth: "Sentry sentry_key=abc, sentry_version=7".into(),
            query: "sentry_key=abc".into(),
            body: b"{\"message\":\"x\"}".to_vec(),
        };
        let enc = e.encode();
        assert_eq!(EventEntry::decode(&enc), Some(e.clone()));
        assert_eq!(e.path(), "/api/42/store/");
        assert_eq!(EventEntry::project_of(&enc), Some(42));
        for cut in 0..12 {
            assert_eq!(EventEntry::decode(&enc[..cut]), None, "cut at {cut}");
        }
    }
}
