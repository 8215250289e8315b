//! node_exporter's `time` collector: the clock, the time zone and the clock sources.
//!
//! ```text
//! node_time_seconds 1.7e9
//! node_time_zone_offset_seconds{time_zone="UTC"} 0
//! /sys/devices/system/clocksource/clocksource0/available_clocksource: "tsc kvm-clock"
//!   → node_time_clocksource_available_info{clocksource="tsc",device="0"} 1
//! ```

use crate::family::{Family, Kind};
use std::path::Path;

/// The local time zone's abbreviation and offset east of UTC in seconds, as Go's
/// `time.Now().Zone()` gives them (TZ, then /etc/localtime).
fn local_zone(now: i64) -> (String, i64) {
    // glibc's localtime_r reads TZ / /etc/localtime itself the first time.
    let t: libc::time_t = now as libc::time_t;
    // SAFETY: `tm` is a plain C struct for which all-zero bytes are a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live, properly aligned locals; localtime_r is the
    // thread-safe variant that writes only into `tm`.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return ("UTC".into(), 0);
    }
    let name = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: tm_zone points to a NUL-terminated string in libc's static zone
        // table (tzname), which lives for the whole process.
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    (name, tm.tm_gmtoff)
}

/// The clock sources of each `clocksource<N>` device.
pub fn clocksources(sys: &Path) -> (Family, Family) {
    let mut avail = Family::new(
        "node_time_clocksource_available_info",
        "Available clocksources read from '/sys/devices/system/clocksource'.",
        Kind::Gauge,
    );
    let mut current = Family::new(
        "node_time_clocksource_current_info",
        "Current clocksource read from '/sys/devices/system/clocksource'.",
        Kind::Gauge,
    );
    let dir = sys.join("devices/system/clocksource");
    let mut devs: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_prefix("clocksource").map(|d| d.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    devs.sort();
    for d in devs {
        let base = dir.join(format!("clocksource{d}"));
        if let Ok(s) = super::read_file(base.join("available_clocksource")) {
            for cs in s.split_whitespace() {
                avail.push(&[("clocksource", cs), ("device", &d)], 1.0);
            }
        }
        if let Ok(s) = super::read_file(base.join("current_clocksource")) {
            let cs = s.trim();
            if !cs.is_empty() {
                current.push(&[("clocksource", cs), ("device", &d)], 1.0);
            }
        }
    }
    (avail, current)
}

/// The collector.
pub fn collect(sys: &Path) -> Result<Vec<Family>, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let (zone, offset) = local_zone(now.as_secs() as i64);
    let mut tz = Family::new(
        "node_time_zone_offset_seconds",
        "System time zone offset in seconds.",
        Kind::Gauge,
    );
    tz.push(&[("time_zone", &zone)], offset as f64);
    let (avail, current) = clocksources(sys);
    Ok(vec![
        Family::single(
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
            Kind::Gauge,
            now.as_secs_f64(),
        ),
        tz,
        avail,
        current,
    ])
}
