//! Free loopback ports.
//!
//! The kernel picks a free port (bind to port 0), and the port is remembered so that two
//! tests of one process never get the same one. Another process can still take it
//! between the pick and the child's bind; [`crate::Collector`] retries on "address in use".
//!
//! A program that takes fixed offsets from one base port (`scripts/cluster`) gets a
//! [`free_range`] below the kernel's ephemeral range, where no outgoing connection of
//! this machine is handed a local port that the program later means to listen on.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    USED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that no other caller of this
/// function in this process has received.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        let mut used = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        if used.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port after 200 tries");
}

/// The first port of the kernel's ephemeral range (`ip_local_port_range`), 32768 when
/// it cannot be read.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A base port `b` such that `b ..= b + len` are free on 127.0.0.1 right now, all below
/// the ephemeral range (so outgoing connections cannot take them before the program
/// binds) and not handed out by [`free_port`] in this process. Starts at a place
/// derived from the process id, so two test processes tend to pick different ranges.
pub fn free_range(len: u16) -> u16 {
    let low = 10_000u16;
    let high = ephemeral_start().saturating_sub(len + 1).max(low + 100);
    let slots = u32::from((high - low) / 100).max(1);
    let first = std::process::id() % slots;
    for k in 0..slots {
        let base = low + (((first + k) % slots) * 100) as u16;
        let mut used = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        let all_free = (base..=base + len)
            .all(|p| !used.contains(&p) && TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            used.extend(base..=base + len);
            return base;
        }
    }
    panic!("no {len} free loopback ports in a row below {high}");
}
