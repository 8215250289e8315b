//! Mount table + `statvfs` → node_exporter's `filesystem` collector.
//!
//! ```text
//! /dev/vda / ext4 rw,relatime 0 0
//! → node_filesystem_avail_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} …
//! ```
//! Virtual file systems and system mount points are left out with the excludes of
//! node_exporter 1.5 as Debian ships it (the reference the tests compare against;
//! Debian adds /run, /mnt and /media to upstream's mount-point exclude).

use super::fields;
use crate::family::{Family, Kind};
use std::collections::HashSet;
use std::sync::OnceLock;

const MOUNT_EXCLUDE: &str =
    r"^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
const FSTYPE_EXCLUDE: &str = r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";

fn re(cell: &'static OnceLock<Option<regex::Regex>>, pat: &str) -> Option<&'static regex::Regex> {
    cell.get_or_init(|| regex::Regex::new(pat).ok()).as_ref()
}

/// A mount that node_exporter would report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub readonly: bool,
}

/// Unescapes the octal escapes of the mount table (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts to report, from the mount table's text.
pub fn mounts(text: &str) -> Vec<Mount> {
    static M: OnceLock<Option<regex::Regex>> = OnceLock::new();
    static F: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let (mex, fex) = (re(&M, MOUNT_EXCLUDE), re(&F, FSTYPE_EXCLUDE));
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let f = fields(line);
        let (Some(dev), Some(mp), Some(fs), Some(opts)) = (f.first(), f.get(1), f.get(2), f.get(3))
        else {
            continue;
        };
        let mp = unescape(mp);
        if mex.is_some_and(|r| r.is_match(&mp)) || fex.is_some_and(|r| r.is_match(fs)) {
            continue;
        }
        let m = Mount {
            device: unescape(dev),
            mountpoint: mp,
            fstype: fs.to_string(),
            readonly: opts.split(',').any(|o| o == "ro"),
        };
        if seen.insert((m.device.clone(), m.mountpoint.clone())) {
            out.push(m);
        }
    }
    out
}

/// Reads `statvfs` of every reported mount.
pub fn collect(mount_table: &str) -> Vec<Family> {
    let mut size = Family::new(
        "node_filesystem_size_bytes",
        "Filesystem size in bytes.",
        Kind::Gauge,
    );
    let mut free = Family::new(
        "node_filesystem_free_bytes",
        "Filesystem free space in bytes.",
        Kind::Gauge,
    );
    let mut avail = Family::new(
        "node_filesystem_avail_bytes",
        "Filesystem space available to non-root users in bytes.",
        Kind::Gauge,
    );
    let mut files = Family::new(
        "node_filesystem_files",
        "Filesystem total file nodes.",
        Kind::Gauge,
    );
    let mut files_free = Family::new(
        "node_filesystem_files_free",
        "Filesystem total free file nodes.",
        Kind::Gauge,
    );
    let mut ro = Family::new(
        "node_filesystem_readonly",
        "Filesystem read-only status.",
        Kind::Gauge,
    );
    let mut err = Family::new(
        "node_filesystem_device_error",
        "Whether an error occurred while getting statistics for the given device.",
        Kind::Gauge,
    );
    for m in mounts(mount_table) {
        let l = [
            ("device", m.device.as_str()),
            ("fstype", m.fstype.as_str()),
            ("mountpoint", m.mountpoint.as_str()),
        ];
        match rustix::fs::statvfs(m.mountpoint.as_str()) {
            Ok(s) => {
                let bs = s.f_frsize as f64;
                size.push(&l, s.f_blocks as f64 * bs);
                free.push(&l, s.f_bfree as f64 * bs);
                avail.push(&l, s.f_bavail as f64 * bs);
                files.push(&l, s.f_files as f64);
                files_free.push(&l, s.f_ffree as f64);
                let flag_ro = s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY);
                ro.push(&l, if flag_ro || m.readonly { 1.0 } else { 0.0 });
                err.push(&l, 0.0);
            }
            Err(_) => err.push(&l, 1.0),
        }
    }
    vec![avail, err, files, files_free, free, ro, size]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_virtual_filesystems() {
        let t = "/dev/vda / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\ntmpfs /run tmpfs rw 0 0\noverlay /x overlay rw 0 0\n/dev/vdb /data/a\\040b xfs ro 0 0\n/dev/vdc /mnt/x xfs rw 0 0\n/dev/vda / ext4 rw 0 0\n";
        let m = mounts(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].mountpoint, "/data/a b");
        assert!(m[1].readonly);
        let f = collect("/dev/root / ext4 rw 0 0\n");
        assert!(
            f[0].samples[0].1 > 0.0,
            "statvfs of / gives available bytes"
        );
    }
}
