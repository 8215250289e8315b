//! `uname(2)` → node_exporter's `uname` collector: `node_uname_info`, the label set host
//! pickers of the common dashboards ("Node Exporter Full", node-mixin) are filled from.
//!
//! ```text
//! node_uname_info{domainname="(none)",machine="x86_64",nodename="vm",release="6.1.0",sysname="Linux",version="#1 SMP …"} 1
//! ```

use crate::family::{Family, Kind};

/// The uname fields, in node_exporter's label names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Uname {
    pub sysname: String,
    pub nodename: String,
    pub release: String,
    pub version: String,
    pub machine: String,
    pub domainname: String,
}

/// Reads `uname(2)`.
pub fn read() -> Option<Uname> {
    let u = rustix::system::uname();
    let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    Some(Uname {
        sysname: s(u.sysname()),
        nodename: s(u.nodename()),
        release: s(u.release()),
        version: s(u.version()),
        machine: s(u.machine()),
        domainname: s(u.domainname()),
    })
}

/// `node_uname_info`.
pub fn family(u: &Uname) -> Family {
    let mut f = Family::new(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
        Kind::Gauge,
    );
    f.push(
        &[
            ("domainname", &u.domainname),
            ("machine", &u.machine),
            ("nodename", &u.nodename),
            ("release", &u.release),
            ("sysname", &u.sysname),
            ("version", &u.version),
        ],
        1.0,
    );
    f
}

/// The collector.
pub fn collect() -> Result<Vec<Family>, String> {
    let u = read().ok_or("uname failed")?;
    Ok(vec![family(&u)])
}
