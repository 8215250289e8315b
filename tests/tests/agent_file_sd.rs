//! `file_sd_configs`: the agent's scrape targets come from a JSON file it re-reads
//! (refresh_interval 1 s here), so targets change without a restart:
//! - a target in the file is scraped with the group's labels (and a relabel rule that
//!   reads `__meta_filepath`);
//! - the file rewritten (renamed into place) with another target: the new one is
//!   scraped, the old one stops and its series are stale at once (an instant query of
//!   its `up` is empty right after, not 5 minutes later);
//! - a file that stops parsing keeps the targets it gave before.

use calm_tests::{wait_for, Agent, Collector};
use std::path::Path;
use std::time::Duration;

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn ups(c: &Collector) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = c
        .api()
        .query_vector("up{job=\"files\"}", None)
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let g = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            (g("instance"), g("team"), g("from_file"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn targets_follow_the_file_without_a_restart() {
    let a = Collector::start();
    let b = Collector::start();
    let c = Collector::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("targets.json");
    let (ia, ib) = (
        format!("127.0.0.1:{}", a.port()),
        format!("127.0.0.1:{}", b.port()),
    );
    write_atomic(
        &file,
        &format!(r#"[{{"targets": ["{ia}"], "labels": {{"team": "alpha"}}}}]"#),
    );
    let agent = Agent::builder()
        .collector(&c.url())
        .config(&format!(
            "[host]\ninterval = \"1h\"\n\
             [[scrape]]\njob = \"files\"\ninterval = \"1s\"\n\
             [[scrape.file_sd_configs]]\nfiles = ['{}/*.json']\nrefresh_interval = \"1s\"\n\
             [[scrape.relabel_configs]]\nsource_labels = ['__meta_filepath']\nregex = '.*/(.*)'\n\
             target_label = 'from_file'\n",
            dir.path().display()
        ))
        .start();
    let first = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        let u = ups(&c);
        (!u.is_empty()).then_some(u)
    });
    assert_eq!(
        first,
        Some(vec![(ia.clone(), "alpha".into(), "targets.json".into())]),
        "agent log:\n{}",
        agent.log_tail(20)
    );

    // Another target in the file: scraped; the old one stale at once.
    write_atomic(
        &file,
        &format!(r#"[{{"targets": ["{ib}"], "labels": {{"team": "beta"}}}}]"#),
    );
    let second = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        let u = ups(&c);
        (u.len() == 1 && u[0].0 == ib).then_some(u)
    });
    assert_eq!(
        second,
        Some(vec![(ib.clone(), "beta".into(), "targets.json".into())]),
        "the file's new target did not replace the old one (the old one's up must be stale); now {:?}\nagent log:\n{}",
        ups(&c),
        agent.log_tail(20)
    );

    // A broken file keeps the targets it gave before.
    write_atomic(&file, "[{\"targets\": [");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ups(&c), vec![(ib, "beta".into(), "targets.json".into())]);
    assert!(agent.log().contains("keeping the ones it gave before"));
}
