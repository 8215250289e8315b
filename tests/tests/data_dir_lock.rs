//! One collector per data directory: a second `calm-collector` on the same `--data-dir`
//! exits at once with a message that says the directory is in use, by which pid, and
//! what to do; the first keeps serving. After the first is killed with `kill -9`, the
//! directory is free again (the kernel dropped the lock) and a collector starts on it.

use calm_tests::collector::collector_bin;
use calm_tests::process::run_bounded;
use calm_tests::Collector;
use std::process::Command;
use std::time::Duration;

#[test]
fn a_second_collector_on_the_same_data_dir_says_it_is_in_use() {
    let mut c = Collector::start();
    let pid = c.pid().expect("running");
    let mut cmd = Command::new(collector_bin());
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{}", calm_tests::ports::free_port()))
        .arg("--data-dir")
        .arg(c.data_dir())
        .env("RUST_BACKTRACE", "0");
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(!out.status.success(), "the second collector must not start");
    let err = out.stderr;
    assert!(
        err.contains(&format!(
            "is in use by another process (pid {pid}), probably another calm-collector"
        )),
        "{err}"
    );
    assert!(err.contains("--data-dir"), "says what to do: {err}");
    assert!(
        !err.contains("WouldBlock") && !err.contains("temporarily unavailable"),
        "no raw OS error: {err}"
    );
    assert!(c.is_running(), "the first collector keeps running");
    assert!(c.api().query_vector("up", None).is_ok(), "and answers");

    c.kill9();
    c.start_again();
    assert!(c.is_running(), "after kill -9 the directory is free again");
}
