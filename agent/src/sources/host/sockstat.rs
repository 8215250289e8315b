//! `/proc/net/sockstat` and `/proc/net/sockstat6` → node_exporter's `sockstat`
//! collector.
//!
//! ```text
//! sockets: used 229                           → node_sockstat_sockets_used 229
//! TCP: inuse 4 orphan 0 tw 0 alloc 6 mem 1    → node_sockstat_TCP_inuse 4 … node_sockstat_TCP_mem 1,
//!                                               node_sockstat_TCP_mem_bytes 4096 (mem is in pages)
//! TCP6: inuse 2                               → node_sockstat_TCP6_inuse 2
//! ```

use super::num;
use crate::family::{Family, Kind};

/// The families of one file; `page` is the page size in bytes.
pub fn parse(text: &str, page: f64, out: &mut Vec<Family>) {
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        for kv in f.chunks(2) {
            let [k, v] = kv else { continue };
            if proto == "sockets" {
                if *k == "used" {
                    out.push(Family::single(
                        "node_sockstat_sockets_used",
                        "Number of IPv4 sockets in use.",
                        Kind::Gauge,
                        num(v),
                    ));
                }
                continue;
            }
            out.push(Family::single(
                format!("node_sockstat_{proto}_{k}"),
                format!("Number of {proto} sockets in state {k}."),
                Kind::Gauge,
                num(v),
            ));
            if *k == "mem" {
                out.push(Family::single(
                    format!("node_sockstat_{proto}_mem_bytes"),
                    format!("Number of {proto} sockets in state mem_bytes."),
                    Kind::Gauge,
                    num(v) * page,
                ));
            }
        }
    }
}

/// The collector (sockstat6 is missing without IPv6 and then left out).
pub fn collect(proc: &std::path::Path) -> Result<Vec<Family>, String> {
    let page = rustix::param::page_size() as f64;
    let mut out = Vec::new();
    let s =
        super::read_file(proc.join("net/sockstat")).map_err(|e| format!("net/sockstat: {e}"))?;
    parse(&s, page, &mut out);
    if let Ok(s) = super::read_file(proc.join("net/sockstat6")) {
        parse(&s, page, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn families() {
        let mut out = Vec::new();
        super::parse(
            "sockets: used 229\nTCP: inuse 4 orphan 0 tw 1 alloc 6 mem 2\nFRAG: inuse 0 memory 0\n",
            4096.0,
            &mut out,
        );
        let got: Vec<_> = out
            .iter()
            .map(|f| (f.name.as_str(), f.samples[0].1))
            .collect();
        assert_eq!(
            got,
            vec![
                ("node_sockstat_sockets_used", 229.0),
                ("node_sockstat_TCP_inuse", 4.0),
                ("node_sockstat_TCP_orphan", 0.0),
                ("node_sockstat_TCP_tw", 1.0),
                ("node_sockstat_TCP_alloc", 6.0),
                ("node_sockstat_TCP_mem", 2.0),
                ("node_sockstat_TCP_mem_bytes", 8192.0),
                ("node_sockstat_FRAG_inuse", 0.0),
                ("node_sockstat_FRAG_memory", 0.0),
            ]
        );
    }
}
