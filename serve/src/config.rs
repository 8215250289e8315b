//! The one file/flags/env merge of `calm-collector` and `calm-agent` (DESIGN.md: a TOML
//! file, then flags, then `CALM_*` variables, each overriding the one before).
//!
//! ```text
//! let (mut cfg, mut origin) = calm_serve::config::load_file::<Config>(flags.config.as_deref())?;
//! origin.flag(&mut cfg.retention, "retention", "--retention", flags.retention.as_deref())?;
//! origin.env(&mut cfg.retention, "retention", "CALM_RETENTION")?;
//! origin.check(cfg.max_series > 0, "limits.max_series", "a number of series, at least 1")?;
//! ```
//!
//! Values are typed when the file is read ([`Duration`], [`ByteSize`], numbers), so a
//! room receives its section ready to use and nothing re-parses strings later. Whatever
//! is wrong is refused at start, naming where the value came from and what was expected:
//!
//! ```text
//! calm.toml:12: retention = "30x": expected a duration like "15d", "12h", "90s"
//! calm.toml:3: retenion = "30d": unknown field `retenion`, expected one of `listen`, …
//! --retention 30x: expected a duration like "15d", "12h", "90s"
//! CALM_MAX_BODY_BYTES=lots: expected a size in bytes like 33554432 or "32MiB"
//! ```

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration refused at start: one line naming the key, where it came from and
/// the form expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// What a duration key expects.
pub const DURATION_FORM: &str = r#"expected a duration like "15d", "12h", "90s""#;
/// What a size key expects.
pub const SIZE_FORM: &str = r#"expected a size in bytes like 33554432 or "32MiB""#;

/// A duration from the configuration, written as Prometheus writes them (`15d`, `1h30m`,
/// `500ms`; `1.5s` too), parsed once when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Duration {
        Duration(std::time::Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Duration {
        Duration(std::time::Duration::from_millis(ms))
    }
    /// The standard library's duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }
    /// Whole milliseconds (saturating).
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl fmt::Display for Duration {
    /// Prometheus' form: `1d2h`, `90s` as `1m30s`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

/// Parses `15d`, `1h30m`, `500ms`, `1.5s`, `2w`, `1y` (365 days) or `0`.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut secs = 0f64;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_end);
        if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
            return None;
        }
        let n: f64 = num.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let size = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 7.0 * 86_400.0,
            "y" => 365.0 * 86_400.0,
            _ => return None,
        };
        secs += n * size;
        rest = tail;
    }
    // Up to ~100 years: beyond is a typo, and it keeps every use in i64 milliseconds.
    (secs.is_finite() && (0.0..=3.2e9).contains(&secs))
        .then(|| std::time::Duration::from_secs_f64(secs))
}

impl std::str::FromStr for Duration {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s)
            .map(Duration)
            .ok_or_else(|| ConfigError(DURATION_FORM.into()))
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(&DURATION_FORM["expected ".len()..])
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
                s.parse().map_err(|_| E::custom(DURATION_FORM))
            }
        }
        d.deserialize_str(V)
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A size in bytes: an integer (`33554432`) or a string with a unit (`"32MiB"`, `"1GiB"`,
/// `"512KiB"`, `"10MB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn get(self) -> u64 {
        self.0
    }
    /// As `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Parses `33554432`, `32MiB`, `1GiB`, `512KiB`, `10MB`, `1kB`, `100B`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl std::str::FromStr for ByteSize {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_size(s)
            .map(ByteSize)
            .ok_or_else(|| ConfigError(SIZE_FORM.into()))
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(&SIZE_FORM["expected ".len()..])
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(SIZE_FORM))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                s.parse().map_err(|_| E::custom(SIZE_FORM))
            }
        }
        d.deserialize_any(V)
    }
}

/// A value a flag or a `CALM_*` variable can set: parsed from its text, with the form it
/// expects for the refusal.
pub trait FromText: Sized {
    /// What the text must look like (`expected …`).
    const EXPECTED: &'static str;
    fn from_text(s: &str) -> Option<Self>;
}

impl FromText for String {
    const EXPECTED: &'static str = "expected a string";
    fn from_text(s: &str) -> Option<Self> {
        Some(s.to_string())
    }
}
impl FromText for Option<String> {
    const EXPECTED: &'static str = "expected a string";
    fn from_text(s: &str) -> Option<Self> {
        Some(Some(s.to_string()))
    }
}
impl FromText for PathBuf {
    const EXPECTED: &'static str = "expected a path";
    fn from_text(s: &str) -> Option<Self> {
        Some(PathBuf::from(s))
    }
}
impl FromText for Option<PathBuf> {
    const EXPECTED: &'static str = "expected a path";
    fn from_text(s: &str) -> Option<Self> {
        Some(Some(PathBuf::from(s)))
    }
}
impl FromText for Duration {
    const EXPECTED: &'static str = DURATION_FORM;
    fn from_text(s: &str) -> Option<Self> {
        parse_duration(s).map(Duration)
    }
}
impl FromText for ByteSize {
    const EXPECTED: &'static str = SIZE_FORM;
    fn from_text(s: &str) -> Option<Self> {
        parse_size(s).map(ByteSize)
    }
}
impl FromText for usize {
    const EXPECTED: &'static str = "expected a whole number";
    fn from_text(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }
}
impl FromText for u64 {
    const EXPECTED: &'static str = "expected a whole number";
    fn from_text(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }
}
impl FromText for bool {
    const EXPECTED: &'static str = "expected true or false";
    fn from_text(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }
}
/// A comma-separated list (`CALM_AGENT_TOKENS=a,b`); empty items are dropped.
impl FromText for Vec<String> {
    const EXPECTED: &'static str = "expected a comma-separated list";
    fn from_text(s: &str) -> Option<Self> {
        Some(
            s.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }
}

/// Reads one environment variable.
type EnvReader = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where each value of a loaded configuration came from: the file (and its text, to find
/// a key's line), or a flag or variable that overrode it. Refusals name that place.
pub struct Origin {
    file: Option<(PathBuf, String)>,
    /// Dotted key → how it was given (`--retention 30x`, `CALM_RETENTION=30x`).
    overrides: HashMap<String, String>,
    env: EnvReader,
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin")
            .field("file", &self.file.as_ref().map(|f| &f.0))
            .field("overrides", &self.overrides)
            .finish()
    }
}

impl Default for Origin {
    fn default() -> Self {
        Origin {
            file: None,
            overrides: HashMap::new(),
            env: Box::new(|k| std::env::var(k).ok()),
        }
    }
}

/// Reads `path` (if any) as `T`; the defaults of `T` without a file. Syntax errors,
/// unknown keys (every section is `deny_unknown_fields`), wrong types and malformed
/// values are refused with the file, the line and the form expected.
pub fn load_file<T: DeserializeOwned + Default>(
    path: Option<&Path>,
) -> Result<(T, Origin), ConfigError> {
    let Some(path) = path else {
        return Ok((T::default(), Origin::default()));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    let value = parse_text::<T>(path, &text)?;
    Ok((
        value,
        Origin {
            file: Some((path.to_path_buf(), text)),
            ..Origin::default()
        },
    ))
}

/// Deserializes `text` (the content of `path`), refusing with file and line.
pub fn parse_text<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str::<T>(text).map_err(|e| {
        let at = e.span().map(|s| s.start).unwrap_or(0);
        let msg = e.message().trim_end();
        ConfigError(format!("{}: {msg}", place(path, text, at)))
    })
}

/// `calm.toml:12: retention = "30x"` for byte offset `at` of `text`.
fn place(path: &Path, text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..start].matches('\n').count() + 1;
    let line = hide_secret(text[start..].lines().next().unwrap_or("").trim());
    let line: String = if line.chars().count() > 120 {
        line.chars().take(117).chain("...".chars()).collect()
    } else {
        line.to_string()
    };
    format!("{}:{line_no}: {line}", path.display())
}

/// `key = value` with the value replaced by `<hidden>` when the key names a secret
/// (tokens, passwords, keys, URLs — `[cluster] postgres` is one — which often carry
/// credentials): refusals are logged.
fn hide_secret(line: &str) -> std::borrow::Cow<'_, str> {
    let Some((key, _)) = line.split_once('=') else {
        return line.into();
    };
    let k = key.trim().to_ascii_lowercase();
    if [
        "token", "tokens", "password", "secret", "key", "url", "dsn", "postgres",
    ]
    .iter()
    .any(|s| k == *s || k.ends_with(&format!("_{s}")))
    {
        format!("{} = <hidden>", key.trim()).into()
    } else {
        line.into()
    }
}

impl Origin {
    /// An origin that reads variables through `env` instead of the process's (tests).
    pub fn with_env(
        mut self,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Box::new(env);
        self
    }

    /// The config file's directory (relative paths in it are resolved against it).
    pub fn file_dir(&self) -> Option<PathBuf> {
        self.file
            .as_ref()
            .and_then(|(p, _)| p.parent().map(Path::to_path_buf))
    }

    /// The config file, if one was read.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Flag `flag` (when given) sets `key`; its text is parsed as `V`.
    pub fn flag<V: FromText>(
        &mut self,
        slot: &mut V,
        key: &str,
        flag: &str,
        given: Option<&str>,
    ) -> Result<(), ConfigError> {
        let Some(text) = given else { return Ok(()) };
        let how = format!("{flag} {text}");
        *slot = V::from_text(text).ok_or_else(|| ConfigError(format!("{how}: {}", V::EXPECTED)))?;
        self.overrides.insert(key.to_string(), how);
        Ok(())
    }

    /// Flag `flag` (when given, already typed by the flag parser) sets `key`.
    pub fn flag_value<V: fmt::Display>(
        &mut self,
        slot: &mut V,
        key: &str,
        flag: &str,
        given: Option<V>,
    ) {
        if let Some(v) = given {
            self.overrides
                .insert(key.to_string(), format!("{flag} {v}"));
            *slot = v;
        }
    }

    /// Records that `key` was set by `how` (`--collector http://a`), for values a flag
    /// sets in a way of its own (repeated flags).
    pub fn note(&mut self, key: &str, how: String) {
        self.overrides.insert(key.to_string(), how);
    }

    /// Flag `flag` (when given) sets path `key`.
    pub fn flag_path(&mut self, slot: &mut PathBuf, key: &str, flag: &str, given: Option<&Path>) {
        if let Some(p) = given {
            self.overrides
                .insert(key.to_string(), format!("{flag} {}", p.display()));
            *slot = p.to_path_buf();
        }
    }

    /// Variable `var` (when set) sets `key`; its text is parsed as `V`.
    pub fn env<V: FromText>(
        &mut self,
        slot: &mut V,
        key: &str,
        var: &str,
    ) -> Result<(), ConfigError> {
        let Some(text) = (self.env)(var) else {
            return Ok(());
        };
        let how = format!("{var}={text}");
        *slot =
            V::from_text(&text).ok_or_else(|| ConfigError(format!("{how}: {}", V::EXPECTED)))?;
        self.overrides.insert(key.to_string(), how);
        Ok(())
    }

    /// Refuses dotted `key` (`limits.max_series`, `alerting.webhooks.0.url`) whose value
    /// is `value`: names the flag or variable that set it, else the file line, else the
    /// key (a default), then says `expected`.
    pub fn refuse(&self, key: &str, value: &dyn fmt::Display, expected: &str) -> ConfigError {
        if let Some(how) = self.overrides.get(key) {
            return ConfigError(format!("{how}: {expected}"));
        }
        if let Some((path, text)) = &self.file {
            if let Some(at) = locate(text, key) {
                return ConfigError(format!("{}: {expected}", place(path, text, at)));
            }
        }
        ConfigError(format!("{key} = {value}: {expected}"))
    }

    /// `Ok` when `ok`, else [`Origin::refuse`].
    pub fn check(
        &self,
        ok: bool,
        key: &str,
        value: &dyn fmt::Display,
        expected: &str,
    ) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(self.refuse(key, value, expected))
        }
    }

    /// Checks that `value` of `key` lies in `lo..=hi` (`expected a number from lo to hi`).
    pub fn range<N: PartialOrd + fmt::Display + Copy>(
        &self,
        key: &str,
        value: N,
        lo: N,
        hi: N,
    ) -> Result<(), ConfigError> {
        self.check(
            lo <= value && value <= hi,
            key,
            &value,
            &format!("expected a number from {lo} to {hi}"),
        )
    }

    /// Checks that `value` of `key` is at least `lo`.
    pub fn at_least<N: PartialOrd + fmt::Display + Copy>(
        &self,
        key: &str,
        value: N,
        lo: N,
    ) -> Result<(), ConfigError> {
        self.check(value >= lo, key, &value, &format!("expected at least {lo}"))
    }
}

/// The byte offset of dotted `key` in the TOML `text` (its deepest part found there).
fn locate(text: &str, key: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut found = None;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let (k, v) = table.iter().find(|(k, _)| k.get_ref() == part)?;
        found = Some(k.span().start);
        let mut v = v;
        // An index into an array of tables: `webhooks.1.url`.
        if let (Some(toml::de::DeValue::Array(a)), Some(i)) = (
            Some(v.get_ref()),
            parts.peek().and_then(|p| p.parse::<usize>().ok()),
        ) {
            parts.next();
            match a.get(i) {
                Some(e) => {
                    found = Some(e.span().start);
                    v = e;
                }
                None => return found,
            }
        }
        match v.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => return found,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Section {
        every: Duration,
        size: ByteSize,
        n: usize,
    }
    impl Default for Section {
        fn default() -> Self {
            Section {
                every: Duration::from_secs(15),
                size: ByteSize(1024),
                n: 3,
            }
        }
    }
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Conf {
        retention: Duration,
        name: String,
        sec: Section,
        hooks: Vec<Section>,
    }

    fn parse(text: &str) -> Result<Conf, String> {
        parse_text::<Conf>(Path::new("calm.toml"), text).map_err(|e| e.0)
    }

    #[test]
    fn durations_and_sizes_parse() {
        let d = |s| parse_duration(s).map(|d| d.as_millis());
        assert_eq!(d("15d"), Some(15 * 86_400_000));
        assert_eq!(d("1h30m"), Some(5_400_000));
        assert_eq!(d("500ms"), Some(500));
        assert_eq!(d("1.5s"), Some(1500));
        assert_eq!(d("0"), Some(0));
        assert_eq!(d("2w"), Some(14 * 86_400_000));
        for bad in [
            "", "10", "30x", "soon", "1h 30m", ".5s", "-1s", "1e3s", "999999y",
        ] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
        assert_eq!(Duration::from_millis(90_500).to_string(), "1m30s500ms");
        assert_eq!(Duration::from_secs(15 * 86_400).to_string(), "15d");
        assert_eq!(parse_size("32MiB"), Some(32 << 20));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1"), None);
    }

    #[test]
    fn file_errors_name_file_line_and_form() {
        let c = parse("name = \"x\"\nretention = \"3d\"\n[sec]\nsize = \"2KiB\"\n").unwrap();
        assert_eq!(c.retention.get().as_secs(), 3 * 86_400);
        assert_eq!(c.sec.size.get(), 2048);
        assert_eq!(c.sec.every.get().as_secs(), 15);
        for (text, want) in [
            (
                "name = \"x\"\n\nretention = \"30x\"\n",
                r#"calm.toml:3: retention = "30x": expected a duration like "15d", "12h", "90s""#,
            ),
            (
                "retenion = \"30d\"\n",
                "calm.toml:1: retenion = \"30d\": unknown field `retenion`, expected one of",
            ),
            (
                "[sec]\nn = 1\nsizes = 4\n",
                "calm.toml:3: sizes = 4: unknown field `sizes`",
            ),
            (
                "name = 4\n",
                "calm.toml:1: name = 4: invalid type: integer `4`, expected a string",
            ),
            (
                "[sec]\nsize = \"big\"\n",
                r#"calm.toml:2: size = "big": expected a size in bytes like 33554432 or "32MiB""#,
            ),
            (
                "[[hooks]]\n[[hooks]]\nevery = 5\n",
                r#"calm.toml:3: every = 5: invalid type: integer `5`, expected a duration like "15d", "12h", "90s""#,
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with(want), "{text:?}\n got: {err}\nwant: {want}");
        }
    }

    #[test]
    fn checks_and_overrides_name_where_the_value_came_from() {
        let dir = std::env::temp_dir().join(format!("calm-serve-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("calm.toml");
        std::fs::write(
            &path,
            "name = \"x\"\n[sec]\nn = 0\n[[hooks]]\n[[hooks]]\n\nn = 9\n",
        )
        .unwrap();
        let (mut c, origin) = load_file::<Conf>(Some(&path)).unwrap();
        let mut origin = origin.with_env(|k| (k == "CALM_RETENTION").then(|| "2h".to_string()));
        let e = origin.range("sec.n", c.sec.n, 1, 5).unwrap_err().0;
        assert_eq!(
            e,
            format!("{}:3: n = 0: expected a number from 1 to 5", path.display())
        );
        let e = origin.range("hooks.1.n", c.hooks[1].n, 1, 5).unwrap_err().0;
        assert_eq!(
            e,
            format!("{}:7: n = 9: expected a number from 1 to 5", path.display())
        );
        // Flags override the file; variables override both; each names itself.
        origin
            .flag(&mut c.retention, "retention", "--retention", Some("1d"))
            .unwrap();
        assert_eq!(c.retention.get().as_secs(), 86_400);
        origin
            .env(&mut c.retention, "retention", "CALM_RETENTION")
            .unwrap();
        assert_eq!(c.retention.get().as_secs(), 7200);
        let e = origin
            .flag(&mut c.retention, "retention", "--retention", Some("30x"))
            .unwrap_err()
            .0;
        assert_eq!(e, format!("--retention 30x: {DURATION_FORM}"));
        origin.flag_value(&mut c.sec.n, "sec.n", "--n", Some(7));
        let e = origin.range("sec.n", c.sec.n, 1, 5).unwrap_err().0;
        assert_eq!(e, "--n 7: expected a number from 1 to 5");
        // A key not in the file: named by itself.
        let e = origin
            .at_least("sec.size", c.sec.size.get(), 4096)
            .unwrap_err()
            .0;
        assert_eq!(e, "sec.size = 1024: expected at least 4096");
        std::fs::remove_dir_all(&dir).ok();
    }
}
