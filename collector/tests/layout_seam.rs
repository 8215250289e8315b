//! The storage seam holds (issue 13): outside `storage/`, `tsdb/`, the sled event
//! store (`errors/sled_store.rs` with its tests, `errors/integrity.rs`) and `main.rs`,
//! no file of `collector/src` names `sled::` or the concrete TSDB type `Db`
//! (anywhere, comments included: the simplest rule that cannot be fooled). Handlers
//! hold the traits of `storage/`; a file that needs the backend goes through it.

use std::path::{Path, PathBuf};

/// Files (relative to `collector/src`, `/`-separated) and folders (ending in `/`)
/// allowed to name the backends.
const ALLOWED: &[&str] = &[
    "storage/",
    "tsdb/",
    // Cluster mode's backend (issue 14): the owners consume into the local TSDB.
    "cluster/",
    "errors/sled_store.rs",
    "errors/sled_store_tests.rs",
    "errors/integrity.rs",
    "main.rs",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let path = e.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The 1-based lines of `text` that name `sled::` or the word `Db`.
fn violations(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let b = line.as_bytes();
        let db_word = line.match_indices("Db").any(|(at, _)| {
            let before = at.checked_sub(1).map(|j| b[j]);
            let after = b.get(at + 2).copied();
            !before.is_some_and(is_word_byte) && !after.is_some_and(is_word_byte)
        });
        if line.contains("sled::") || db_word {
            out.push((i + 1, line.trim().to_string()));
        }
    }
    out
}

fn allowed(rel: &str) -> bool {
    ALLOWED.iter().any(|a| {
        if a.ends_with('/') {
            rel.starts_with(a)
        } else {
            rel == *a
        }
    })
}

#[test]
fn the_scanner_finds_what_it_must() {
    assert_eq!(violations("use crate::tsdb::Db;").len(), 1);
    assert_eq!(violations("fn f(db: Arc<Db>) {}").len(), 1);
    assert_eq!(violations("/// over a [`Db`].").len(), 1);
    assert_eq!(violations("let t: sled::Tree = x;").len(), 1);
    assert_eq!(violations("Db").len(), 1);
    assert!(violations("DbError, SledDb, Dbx, db, the sled store, xDb").is_empty());
}

#[test]
fn only_storage_tsdb_the_sled_event_store_and_main_name_the_backends() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 50,
        "only {} files under {}",
        files.len(),
        src.display()
    );
    let mut bad = Vec::new();
    let mut allowed_hits = 0;
    for f in &files {
        let rel = f
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let v = violations(&text);
        if allowed(&rel) {
            allowed_hits += v.len();
            continue;
        }
        for (line, what) in v {
            bad.push(format!("collector/src/{rel}:{line}: {what}"));
        }
    }
    // The backends are named somewhere (so the scan reads what it should).
    assert!(
        allowed_hits > 10,
        "the scan found the backends only {allowed_hits} times"
    );
    assert!(
        bad.is_empty(),
        "these files name `sled::` or the concrete `Db` outside storage/, tsdb/, the sled \
         event store and main.rs; hold the storage traits instead (collector/src/storage/mod.rs):\n{}",
        bad.join("\n")
    );
}
