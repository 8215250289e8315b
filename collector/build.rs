//! Link order of the release binary: the functions a typical run executes first and
//! together (`symbol-order.txt`, made by `scripts/symbol-order`), so the code the
//! collector keeps resident is the code it runs rather than everything near it.
//!
//! Only where the linker is known to be LLD, which reads `--symbol-ordering-file`:
//! release builds for x86_64 Linux (GNU) with Rust >= 1.90 (LLD is its default there),
//! and no linker chosen by the user (`CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER`, or
//! `linker` / `-fuse-ld` in the rustflags). `CALM_NO_SYMBOL_ORDER=1` turns it off.
//! Nothing else changes: a missing or stale file only loses the saving.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "CALM_NO_SYMBOL_ORDER",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let order = Path::new(&env("CARGO_MANIFEST_DIR")).join("symbol-order.txt");
    let rustflags = env("CARGO_ENCODED_RUSTFLAGS");
    let wanted = env("PROFILE") == "release"
        && env("TARGET") == "x86_64-unknown-linux-gnu"
        && env("CALM_NO_SYMBOL_ORDER") != "1"
        && std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none()
        && !rustflags.contains("linker")
        && !rustflags.contains("fuse-ld")
        && order.is_file()
        && rustc_minor().is_some_and(|minor| minor >= 90);
    if wanted {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// The minor version of the rustc that builds this crate (`rustc 1.95.0 (...)` → 95).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var_os("RUSTC")?;
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse().ok()
}
