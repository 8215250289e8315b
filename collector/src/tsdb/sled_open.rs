//! Opening a sled database of this process's stores (the TSDB's page index and metadata,
//! the event store through `errors::integrity`).
//!
//! sled's lock on its files goes with its last background thread, a moment after the
//! `Db` is dropped: a reopen in the same process (after a failed write, a test reopening
//! a store) can find it still held. It is waited for, briefly; another process holding
//! it is still an error after that.

use std::time::Duration;

/// Tries at opening a sled database whose lock is held, [`LOCK_WAIT`] apart (3 s).
const LOCK_TRIES: u32 = 30;
const LOCK_WAIT: Duration = Duration::from_millis(100);

/// Opens the database `config` describes, waiting up to 3 s for a lock still held by a
/// dropped handle of this process.
pub fn open(config: &sled::Config) -> sled::Result<sled::Db> {
    let mut tries = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if tries < LOCK_TRIES && e.to_string().contains("could not acquire lock") =>
            {
                tries += 1;
                std::thread::sleep(LOCK_WAIT);
            }
            opened => return opened,
        }
    }
}
