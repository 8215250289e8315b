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
use std::sync::OnceLock;

/// node_exporter 1.5's `--collector.netstat.fields` default.
pub const FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

fn wanted(key: &str) -> bool {
    static RE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(FIELDS).ok())
        .as_ref()
        .is_some_and(|re| re.is_match(key))
}

/// Calls `each(i, Proto_Field, value)` for the pairs of a header/value-line file
/// (netstat, snmp), `i` counting them; `key` is a buffer reused for the names.
fn each_pair(text: &str, key: &mut String, mut each: impl FnMut(usize, &str, &str)) {
    let mut i = 0;
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
            each(i, key, value);
            i += 1;
        }
    }
}

/// Calls `each(i, Proto6_Field, value)` for `/proc/net/snmp6`: the protocol ends at
/// its "6"; `i` counts the lines.
fn each_snmp6(text: &str, key: &mut String, mut each: impl FnMut(usize, &str, &str)) {
    for (i, line) in text.lines().enumerate() {
        let mut f = line.split_whitespace();
        let (Some(k), Some(v)) = (f.next(), f.next()) else {
            continue;
        };
        if let Some(at) = k.find('6') {
            key.clear();
            key.push_str(&k[..=at]);
            key.push('_');
            key.push_str(&k[at + 1..]);
            each(i, key, v);
        }
    }
}

/// `(Proto_Field, value)` pairs of a header/value-line file (netstat, snmp).
#[cfg(test)]
pub fn parse_pairs(text: &str, out: &mut Vec<(String, String)>) {
    each_pair(text, &mut String::new(), |_, k, v| {
        out.push((k.to_string(), v.to_string()))
    });
}

/// `(Proto6_Field, value)` pairs of `/proc/net/snmp6`: the protocol ends at its "6".
#[cfg(test)]
pub fn parse_snmp6(text: &str, out: &mut Vec<(String, String)>) {
    each_snmp6(text, &mut String::new(), |_, k, v| {
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
            format!("node_netstat_{key}"),
            format!("Statistic {proto}{field}."),
            Kind::Untyped,
            num(v),
        ));
    }
    out
}

/// The collector: only the selected fields are kept (the files hold hundreds).
pub fn collect(proc: &std::path::Path) -> Result<Vec<Family>, String> {
    static NETSTAT: super::FieldMemo = std::sync::Mutex::new(Vec::new());
    static SNMP: super::FieldMemo = std::sync::Mutex::new(Vec::new());
    static SNMP6: super::FieldMemo = std::sync::Mutex::new(Vec::new());
    let mut pairs = Vec::new();
    let mut key = String::with_capacity(64);
    let mut keep = |memo: &mut Vec<(String, bool)>, i: usize, k: &str, v: &str| {
        if super::memo_selected(memo, i, k, wanted) {
            pairs.push((k.to_string(), v.to_string()));
        }
    };
    let netstat =
        super::read_file(proc.join("net/netstat")).map_err(|e| format!("net/netstat: {e}"))?;
    let mut memo = super::lock_memo(&NETSTAT);
    each_pair(&netstat, &mut key, |i, k, v| keep(&mut memo, i, k, v));
    drop(memo);
    let snmp = super::read_file(proc.join("net/snmp")).map_err(|e| format!("net/snmp: {e}"))?;
    let mut memo = super::lock_memo(&SNMP);
    each_pair(&snmp, &mut key, |i, k, v| keep(&mut memo, i, k, v));
    drop(memo);
    // Without IPv6 the file is missing; node_exporter goes on without it.
    if let Ok(s) = super::read_file(proc.join("net/snmp6")) {
        let mut memo = super::lock_memo(&SNMP6);
        each_snmp6(&s, &mut key, |i, k, v| keep(&mut memo, i, k, v));
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
