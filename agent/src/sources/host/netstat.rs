//! `/proc/net/netstat`, `/proc/net/snmp`, `/proc/net/snmp6` → node_exporter's `netstat`
//! collector: untyped `node_netstat_<Proto>_<Field>` for the fields its default
//! `--collector.netstat.fields` selects.
//!
//! ```text
//! Tcp: RtoAlgorithm RtoMin … ActiveOpens …     (header line)
//! Tcp: 1 200 … 1234 …                          (value line)  → node_netstat_Tcp_ActiveOpens 1234
//! Ip6InOctets 4711                             (snmp6)       → node_netstat_Ip6_InOctets 4711
//! ```

use super::num;
use crate::family::{Family, Kind};
use std::collections::HashMap;
use std::sync::OnceLock;

/// node_exporter 1.5's `--collector.netstat.fields` default.
pub const FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

fn wanted(key: &str) -> bool {
    static RE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(FIELDS).ok())
        .as_ref()
        .is_some_and(|re| re.is_match(key))
}

/// [`wanted`], remembered per key: the files name the same few hundred fields every
/// read, and matching each one against the regex again was most of the collector's
/// time. Bounded (a kernel has a fixed set of fields; past the bound keys are matched
/// without being remembered).
fn wanted_cached(key: &str) -> bool {
    const MAX_KEYS: usize = 4096;
    static CACHE: OnceLock<parking_lot::Mutex<HashMap<String, bool>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(w) = cache.lock().get(key) {
        return *w;
    }
    let w = wanted(key);
    let mut c = cache.lock();
    if c.len() < MAX_KEYS {
        c.insert(key.to_string(), w);
    }
    w
}

/// Calls `each(Proto_Field, value)` for the pairs of a header/value-line file
/// (netstat, snmp); `key` is a buffer reused for the names.
fn each_pair(text: &str, key: &mut String, mut each: impl FnMut(&str, &str)) {
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let mut n = names.split_whitespace();
        let mut v = values.split_whitespace();
        let (Some(proto), Some(_)) = (n.next(), v.next()) else {
            continue;
        };
        let proto = proto.trim_end_matches(':');
        for (name, value) in n.zip(v) {
            key.clear();
            key.push_str(proto);
            key.push('_');
            key.push_str(name);
            each(key, value);
        }
    }
}

/// Calls `each(Proto6_Field, value)` for `/proc/net/snmp6`: the protocol ends at its "6".
fn each_snmp6(text: &str, key: &mut String, mut each: impl FnMut(&str, &str)) {
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(k), Some(v)) = (f.next(), f.next()) else {
            continue;
        };
        if let Some(i) = k.find('6') {
            key.clear();
            key.push_str(&k[..=i]);
            key.push('_');
            key.push_str(&k[i + 1..]);
            each(key, v);
        }
    }
}

/// `(Proto_Field, value)` pairs of a header/value-line file (netstat, snmp).
#[cfg(test)]
pub fn parse_pairs(text: &str, out: &mut Vec<(String, String)>) {
    each_pair(text, &mut String::new(), |k, v| {
        out.push((k.to_string(), v.to_string()))
    });
}

/// `(Proto6_Field, value)` pairs of `/proc/net/snmp6`: the protocol ends at its "6".
#[cfg(test)]
pub fn parse_snmp6(text: &str, out: &mut Vec<(String, String)>) {
    each_snmp6(text, &mut String::new(), |k, v| {
        out.push((k.to_string(), v.to_string()))
    });
}

/// The families for the selected fields.
pub fn families(pairs: &[(String, String)]) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    for (key, v) in pairs {
        if !wanted(key) || out.iter().any(|f| f.name[13..] == *key) {
            continue;
        }
        let (proto, field) = key.split_once('_').unwrap_or((key, ""));
        out.push(Family::single(
            &format!("node_netstat_{key}"),
            &format!("Statistic {proto}{field}."),
            Kind::Untyped,
            num(v),
        ));
    }
    out
}

/// The collector: only the selected fields are kept (the files hold hundreds).
pub fn collect(proc: &std::path::Path) -> Result<Vec<Family>, String> {
    let mut pairs = Vec::new();
    let mut key = String::with_capacity(64);
    let mut keep = |k: &str, v: &str| {
        if wanted_cached(k) {
            pairs.push((k.to_string(), v.to_string()));
        }
    };
    let netstat =
        super::read_file(proc.join("net/netstat")).map_err(|e| format!("net/netstat: {e}"))?;
    each_pair(&netstat, &mut key, &mut keep);
    let snmp = super::read_file(proc.join("net/snmp")).map_err(|e| format!("net/snmp: {e}"))?;
    each_pair(&snmp, &mut key, &mut keep);
    // Without IPv6 the file is missing; node_exporter goes on without it.
    if let Ok(s) = super::read_file(proc.join("net/snmp6")) {
        each_snmp6(&s, &mut key, &mut keep);
    }
    Ok(families(&pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_fields() {
        let mut p = Vec::new();
        parse_pairs(
            "Tcp: RtoMin ActiveOpens InErrs\nTcp: 200 7 1\nTcpExt: ListenDrops TW\nTcpExt: 3 9\n",
            &mut p,
        );
        parse_snmp6("Ip6InOctets 42\nUdp6InErrors 2\nIcmp6InMsgs 5\n", &mut p);
        let f = families(&p);
        let got: Vec<_> = f
            .iter()
            .map(|f| (f.name.as_str(), f.samples[0].1))
            .collect();
        assert_eq!(
            got,
            vec![
                ("node_netstat_Tcp_ActiveOpens", 7.0),
                ("node_netstat_Tcp_InErrs", 1.0),
                ("node_netstat_TcpExt_ListenDrops", 3.0),
                ("node_netstat_Ip6_InOctets", 42.0),
                ("node_netstat_Udp6_InErrors", 2.0),
                ("node_netstat_Icmp6_InMsgs", 5.0),
            ]
        );
        assert_eq!(f[0].kind, Kind::Untyped);
    }
}
