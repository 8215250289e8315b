//! Logs written to a file (as systemd, Docker or a redirect do) are plain text: no
//! ANSI colour codes from either program when stderr is not a terminal.

use calm_tests::{Agent, Collector};

fn assert_plain(what: &str, log: &str) {
    assert!(
        log.contains("INFO"),
        "{what} logged nothing at INFO:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "{what} wrote ANSI escape codes into its log file:\n{log:?}"
    );
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let c = Collector::start();
    let a = Agent::builder()
        .collector(&c.url())
        .config("[host]\ninterval = \"1h\"\n")
        .start();
    let collector_log = std::fs::read_to_string(c.log_path()).expect("collector log");
    assert_plain("calm-collector", &collector_log);
    assert_plain("calm-agent", &a.log());
}
