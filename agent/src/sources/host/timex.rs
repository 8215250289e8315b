//! `adjtimex(2)` → node_exporter's `timex` collector (NTP discipline state), with its
//! unit conversions: offsets in seconds (µs or ns by STA_NANO), frequencies from the
//! kernel's 16.16 fixed-point ppm.

use crate::family::{Family, Kind};

/// The kernel's TIME_ERROR return: the clock is not synchronised.
const TIME_ERROR: i32 = 5;
/// `timex.status` bit: offsets are in nanoseconds, not microseconds.
const STA_NANO: i32 = 0x2000;
/// 2^16 × 10^6: ppm in 16.16 fixed point.
const PPM16FRAC: f64 = 1_000_000.0 * 65536.0;

/// The collector.
pub fn collect() -> Result<Vec<Family>, String> {
    // SAFETY: `timex` is a plain C struct for which all-zero bytes are valid; modes = 0
    // makes adjtimex read only, writing the current state into the struct we own.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: see above; the pointer is to a live, aligned local.
    let status = unsafe { libc::adjtimex(&mut tx) };
    if status < 0 {
        return Err(format!("adjtimex: {}", std::io::Error::last_os_error()));
    }
    let divisor = if tx.status & STA_NANO != 0 { 1e9 } else { 1e6 };
    let g = |n: &'static str, h: &'static str, v: f64| Family::single(n, h, Kind::Gauge, v);
    let c = |n: &'static str, h: &'static str, v: f64| Family::single(n, h, Kind::Counter, v);
    Ok(vec![
        g(
            "node_timex_sync_status",
            "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
            if status == TIME_ERROR { 0.0 } else { 1.0 },
        ),
        g(
            "node_timex_offset_seconds",
            "Time offset in between local system and reference clock.",
            tx.offset as f64 / divisor,
        ),
        g(
            "node_timex_frequency_adjustment_ratio",
            "Local clock frequency adjustment.",
            1.0 + tx.freq as f64 / PPM16FRAC,
        ),
        g(
            "node_timex_maxerror_seconds",
            "Maximum error in seconds.",
            tx.maxerror as f64 / 1e6,
        ),
        g(
            "node_timex_estimated_error_seconds",
            "Estimated error in seconds.",
            tx.esterror as f64 / 1e6,
        ),
        g(
            "node_timex_status",
            "Value of the status array bits.",
            tx.status as f64,
        ),
        g(
            "node_timex_loop_time_constant",
            "Phase-locked loop time constant.",
            tx.constant as f64,
        ),
        g(
            "node_timex_tick_seconds",
            "Seconds between clock ticks.",
            tx.tick as f64 / 1e6,
        ),
        g(
            "node_timex_pps_frequency_hertz",
            "Pulse per second frequency.",
            tx.ppsfreq as f64 / PPM16FRAC,
        ),
        g(
            "node_timex_pps_jitter_seconds",
            "Pulse per second jitter.",
            tx.jitter as f64 / divisor,
        ),
        g(
            "node_timex_pps_shift_seconds",
            "Pulse per second interval duration.",
            tx.shift as f64,
        ),
        g(
            "node_timex_pps_stability_hertz",
            "Pulse per second stability, average of recent frequency changes.",
            tx.stabil as f64 / PPM16FRAC,
        ),
        c(
            "node_timex_pps_jitter_total",
            "Pulse per second count of jitter limit exceeded events.",
            tx.jitcnt as f64,
        ),
        c(
            "node_timex_pps_calibration_total",
            "Pulse per second count of calibration intervals.",
            tx.calcnt as f64,
        ),
        c(
            "node_timex_pps_error_total",
            "Pulse per second count of calibration errors.",
            tx.errcnt as f64,
        ),
        c(
            "node_timex_pps_stability_exceeded_total",
            "Pulse per second count of stability limit exceeded events.",
            tx.stbcnt as f64,
        ),
        g(
            "node_timex_tai_offset_seconds",
            "International Atomic Time (TAI) offset.",
            tx.tai as f64,
        ),
    ])
}
