//! The collector's dependencies get the same features whichever packages a build selects
//! (`-p calm-collector`, with the agent as `scripts/run` and the Dockerfile build it, or
//! the whole workspace). Features are part of every crate's symbol hashes, and
//! `collector/symbol-order.txt`, the release link order, names symbols: a feature that
//! only some selections turn on would leave the order matching none of the others'
//! builds (a fresh clone's `scripts/run` once matched 1,335 of its 2,815 names, because
//! the agent turned on bitflags' `std`). Asks `cargo tree`, offline.

use std::collections::BTreeSet;
use std::process::Command;

/// `name version [features]` of every package in the collector's graph, as resolved when
/// building `selection`.
fn collector_graph(selection: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let tree = |args: &[&str]| -> String {
        let out = Command::new(&cargo)
            .current_dir(root)
            .args(["tree", "--offline", "--locked", "-e", "normal,build"])
            .args(["--prefix", "none", "--target", "x86_64-unknown-linux-gnu"])
            .args(args)
            .output()
            .expect("run cargo tree");
        assert!(
            out.status.success(),
            "cargo tree {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let clean = |line: &str| line.replace(" (*)", "").replace(" (proc-macro)", "");
    // The collector's packages (name and version), from its own tree.
    let ours: BTreeSet<String> = tree(&["-p", "calm-collector", "-f", "{p}"])
        .lines()
        .map(|l| {
            clean(l)
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let mut args = selection.to_vec();
    args.extend(["-f", "{p} [{f}]"]);
    tree(&args)
        .lines()
        .map(clean)
        .filter(|l| {
            let key = l.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            ours.contains(&key)
        })
        .collect()
}

#[test]
fn collector_dependencies_have_the_same_features_in_every_build_selection() {
    let alone = collector_graph(&["-p", "calm-collector"]);
    assert!(alone.len() > 100, "too few packages: {alone:?}");
    for selection in [
        &["-p", "calm-collector", "-p", "calm-agent"][..],
        &["-p", "calm-collector", "-p", "calm-bench"][..],
        &["--workspace"][..],
    ] {
        let other = collector_graph(selection);
        let only_alone: Vec<_> = alone.difference(&other).collect();
        let only_other: Vec<_> = other.difference(&alone).collect();
        assert!(
            only_alone.is_empty() && only_other.is_empty(),
            "{selection:?} builds the collector's dependencies with other features than \
             `-p calm-collector`:\n  alone: {only_alone:?}\n  {selection:?}: {only_other:?}\n\
             Ask for the missing features in the collector's own dependencies (see \
             `bitflags` in the workspace Cargo.toml), then rerun scripts/symbol-order."
        );
    }
}
