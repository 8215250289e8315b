//! Secrets in logs and on disk: keys and URLs are logged masked (a short prefix and a
//! fingerprint, enough to tell two apart), data files are the owner's only.

use std::path::Path;

/// A short, stable fingerprint of a secret (8 hex digits of its xxh3 hash): tells
/// two secrets apart in logs without saying anything usable about either.
pub fn fingerprint(secret: &str) -> String {
    format!(
        "{:08x}",
        xxhash_rust::xxh3::xxh3_64(secret.as_bytes()) as u32
    )
}

/// A DSN key as logs show it: its first 4 characters and a fingerprint.
pub fn mask_key(key: &str) -> String {
    let head: String = key.chars().take(4).collect();
    format!("{head}…(fp {})", fingerprint(key))
}

/// A URL as logs show it: scheme and host (port kept), then a fingerprint of the
/// whole URL in place of the path, query and user info (where webhook secrets live).
pub fn mask_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("?", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    format!("{scheme}://{host}/…(fp {})", fingerprint(url))
}

/// Makes the process create files 0600 and directories 0700 (umask 077): the data
/// directory holds DSN keys (`projects.json`) and everything sent to the collector.
pub fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask(2) only sets the process' file-mode creation mask; it cannot fail
    // and touches no memory of ours.
    unsafe {
        libc::umask(0o077);
    }
}

/// Tightens what an older version left readable: the data dir to 0700, the files in
/// it that hold secrets to 0600. Missing paths are skipped; a failure is logged.
pub fn restrict_data_dir(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &Path, mode: u32| {
            let Ok(meta) = std::fs::metadata(p) else {
                return;
            };
            if meta.permissions().mode() & 0o777 == mode {
                return;
            }
            if let Err(e) = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)) {
                tracing::warn!(path = %p.display(), error = %e, "cannot restrict the permissions of a data file");
            }
        };
        set(dir, 0o700);
        for f in ["projects.json", "agents.json"] {
            set(&dir.join(f), 0o600);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_say_nothing_usable() {
        let key = "0123456789abcdef0123456789abcdef";
        let m = mask_key(key);
        assert!(m.starts_with("0123…") && !m.contains("456789"), "{m}");
        let url = "https://user:pw@hooks.slack.com:8443/services/T000/B000/XXXX?x=1";
        let m = mask_url(url);
        assert!(m.starts_with("https://hooks.slack.com:8443/…(fp "), "{m}");
        assert!(!m.contains("services") && !m.contains("pw"), "{m}");
        assert_ne!(fingerprint("a"), fingerprint("b"));
    }
}
