//! The function library: Go's builtins and Prometheus' template functions
//! (`humanize*`, `query`, `sortByLabel`, `printf`, …).

use super::*;
use crate::alerts::gofmt::{format_e, format_f, format_g};

pub(super) const FUNCS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "js",
    "urlquery",
    "slice",
    "call",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toUpper",
    "toLower",
    "title",
    "reReplaceAll",
    "match",
    "stripPort",
    "stripDomain",
    "safeHtml",
    "args",
    "query",
    "first",
    "value",
    "label",
    "sortByLabel",
    "strvalue",
    "graphLink",
    "tableLink",
    "externalURL",
    "pathPrefix",
    "parseDuration",
    "toTime",
];

impl Exec<'_> {
    pub(super) fn call(&mut self, f: &str, args: Vec<Val>) -> R<Val> {
        let n = args.len();
        let want = |k: usize| -> R<()> {
            if n == k {
                Ok(())
            } else {
                err(format!("wrong number of args for {f}: want {k} got {n}"))
            }
        };
        let s = |v: &Val| -> String { v.print() };
        Ok(match f {
            "and" => {
                if n == 0 {
                    return err("wrong number of args for and: want at least 1 got 0");
                }
                args.iter()
                    .find(|v| !v.truthy())
                    .cloned()
                    .unwrap_or_else(|| args[n - 1].clone())
            }
            "or" => {
                if n == 0 {
                    return err("wrong number of args for or: want at least 1 got 0");
                }
                args.iter()
                    .find(|v| v.truthy())
                    .cloned()
                    .unwrap_or_else(|| args[n - 1].clone())
            }
            "not" => {
                want(1)?;
                Val::Bool(!args[0].truthy())
            }
            "len" => {
                want(1)?;
                Val::Int(match &args[0] {
                    Val::Str(x) => x.len(),
                    Val::Map(m) => m.len(),
                    Val::List(l) => l.len(),
                    other => return err(format!("len of type {}", other.type_name())),
                } as i64)
            }
            "index" => {
                if n < 2 {
                    return Ok(args.into_iter().next().unwrap_or(Val::Nil));
                }
                let mut cur = args[0].clone();
                for k in &args[1..] {
                    cur = match (cur, k) {
                        (Val::Map(m), k) => Val::Str(m.get(&s(k)).cloned().unwrap_or_default()),
                        (Val::List(l), Val::Int(i)) => {
                            l.get(*i as usize).cloned().ok_or_else(|| {
                                TemplateError(format!(
                                    "error calling index: index out of range: {i}"
                                ))
                            })?
                        }
                        (other, _) => {
                            return err(format!("can't index item of type {}", other.type_name()))
                        }
                    };
                }
                cur
            }
            "print" => {
                // Go adds spaces between operands when neither is a string.
                let mut out = String::new();
                for (i, a) in args.iter().enumerate() {
                    if i > 0 && !matches!(a, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_)) {
                        out.push(' ');
                    }
                    out.push_str(&a.print());
                }
                Val::Str(out)
            }
            "println" => Val::Str(format!(
                "{}\n",
                args.iter().map(|a| a.print()).collect::<Vec<_>>().join(" ")
            )),
            "printf" => {
                if n == 0 {
                    return err("wrong number of args for printf: want at least 1 got 0");
                }
                Val::Str(sprintf(&s(&args[0]), &args[1..]))
            }
            "eq" => {
                if n < 2 {
                    return err("missing argument for comparison");
                }
                let mut any = false;
                for b in &args[1..] {
                    if compare(&args[0], b)? == std::cmp::Ordering::Equal {
                        any = true;
                    }
                }
                Val::Bool(any)
            }
            "ne" | "lt" | "le" | "gt" | "ge" => {
                want(2)?;
                let o = compare(&args[0], &args[1])?;
                use std::cmp::Ordering::*;
                Val::Bool(match f {
                    "ne" => o != Equal,
                    "lt" => o == Less,
                    "le" => o != Greater,
                    "gt" => o == Greater,
                    _ => o != Less,
                })
            }
            "html" | "safeHtml" => {
                want(1)?;
                if f == "safeHtml" {
                    Val::Str(s(&args[0]))
                } else {
                    Val::Str(
                        s(&args[0])
                            .replace('&', "&amp;")
                            .replace('<', "&lt;")
                            .replace('>', "&gt;")
                            .replace('"', "&#34;")
                            .replace('\'', "&#39;"),
                    )
                }
            }
            "urlquery" => Val::Str(
                form_urlencoded::byte_serialize(
                    args.iter()
                        .map(|a| a.print())
                        .collect::<String>()
                        .as_bytes(),
                )
                .collect(),
            ),
            "js" | "slice" | "call" => {
                return err(format!("function {f} is not supported in alert templates"))
            }
            "humanize" => {
                want(1)?;
                Val::Str(humanize(args[0].to_float()?))
            }
            "humanize1024" => {
                want(1)?;
                Val::Str(humanize1024(args[0].to_float()?))
            }
            "humanizeDuration" => {
                want(1)?;
                Val::Str(humanize_duration(args[0].to_float()?))
            }
            "humanizePercentage" => {
                want(1)?;
                Val::Str(format!(
                    "{}%",
                    format_g(args[0].to_float()? * 100.0, Some(4))
                ))
            }
            "humanizeTimestamp" | "toTime" => {
                want(1)?;
                let v = args[0].to_float()?;
                if v.is_nan() || v.is_infinite() {
                    Val::Str(format_g(v, Some(4)))
                } else {
                    Val::Str(go_time_string(v))
                }
            }
            "toUpper" => {
                want(1)?;
                Val::Str(s(&args[0]).to_uppercase())
            }
            "toLower" => {
                want(1)?;
                Val::Str(s(&args[0]).to_lowercase())
            }
            "title" => {
                want(1)?;
                let mut out = String::new();
                let mut prev_letter = false;
                for c in s(&args[0]).chars() {
                    if !prev_letter && c.is_alphabetic() {
                        out.extend(c.to_uppercase());
                    } else {
                        out.push(c);
                    }
                    prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
                }
                Val::Str(out)
            }
            "reReplaceAll" => {
                want(3)?;
                let re = regex::Regex::new(&s(&args[0]))
                    .map_err(|e| TemplateError(format!("error calling reReplaceAll: {e}")))?;
                Val::Str(
                    re.replace_all(&s(&args[2]), s(&args[1]).as_str())
                        .into_owned(),
                )
            }
            "match" => {
                want(2)?;
                let re = regex::Regex::new(&s(&args[0]))
                    .map_err(|e| TemplateError(format!("error calling match: {e}")))?;
                Val::Bool(re.is_match(&s(&args[1])))
            }
            "stripPort" => {
                want(1)?;
                let h = s(&args[0]);
                Val::Str(match h.rsplit_once(':') {
                    Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                    _ => h,
                })
            }
            "stripDomain" => {
                want(1)?;
                let h = s(&args[0]);
                let (host, port) = match h.rsplit_once(':') {
                    Some((a, p)) if p.chars().all(|c| c.is_ascii_digit()) => {
                        (a.to_string(), format!(":{p}"))
                    }
                    _ => (h.clone(), String::new()),
                };
                if host.parse::<std::net::IpAddr>().is_ok() {
                    Val::Str(h)
                } else {
                    Val::Str(format!("{}{port}", host.split('.').next().unwrap_or("")))
                }
            }
            "args" => {
                let mut m = BTreeMap::new();
                for (i, a) in args.into_iter().enumerate() {
                    m.insert(format!("arg{i}"), a);
                }
                Val::Struct(m)
            }
            "query" => {
                want(1)?;
                let Some(q) = self.query else {
                    return err("error calling query: queries are not available here");
                };
                let res = q(&s(&args[0]))
                    .map_err(|e| TemplateError(format!("error calling query: {e}")))?;
                Val::List(res.into_iter().map(Val::Sample).collect())
            }
            "first" => {
                want(1)?;
                match &args[0] {
                    Val::List(l) => l.first().cloned().ok_or_else(|| {
                        TemplateError(
                            "error calling first: first() called on vector with no elements".into(),
                        )
                    })?,
                    other => {
                        return err(format!(
                            "error calling first: not a query result: {}",
                            other.type_name()
                        ))
                    }
                }
            }
            "value" => {
                want(1)?;
                match &args[0] {
                    Val::Sample(x) => Val::Num(x.value),
                    other => {
                        return err(format!(
                            "error calling value: not a sample: {}",
                            other.type_name()
                        ))
                    }
                }
            }
            "label" => {
                want(2)?;
                match &args[1] {
                    Val::Sample(x) => {
                        Val::Str(x.labels.get(&s(&args[0])).cloned().unwrap_or_default())
                    }
                    other => {
                        return err(format!(
                            "error calling label: not a sample: {}",
                            other.type_name()
                        ))
                    }
                }
            }
            "strvalue" => {
                want(1)?;
                match &args[0] {
                    Val::Sample(x) => {
                        Val::Str(x.labels.get("__value__").cloned().unwrap_or_default())
                    }
                    _ => Val::Str(String::new()),
                }
            }
            "sortByLabel" => {
                want(2)?;
                let key = s(&args[0]);
                match &args[1] {
                    Val::List(l) => {
                        let mut l = l.clone();
                        l.sort_by(|a, b| {
                            let g = |v: &Val| match v {
                                Val::Sample(x) => x.labels.get(&key).cloned().unwrap_or_default(),
                                _ => String::new(),
                            };
                            g(a).cmp(&g(b))
                        });
                        Val::List(l)
                    }
                    other => {
                        return err(format!(
                            "error calling sortByLabel: not a query result: {}",
                            other.type_name()
                        ))
                    }
                }
            }
            "graphLink" | "tableLink" => {
                want(1)?;
                let tab = if f == "graphLink" { 0 } else { 1 };
                let q: String = form_urlencoded::byte_serialize(s(&args[0]).as_bytes()).collect();
                Val::Str(format!("/graph?g0.expr={q}&g0.tab={tab}"))
            }
            "externalURL" => Val::Str(self.external_url.clone()),
            "pathPrefix" => Val::Str(String::new()),
            "parseDuration" => {
                want(1)?;
                let d = promql_parser::util::parse_duration(&s(&args[0]))
                    .map_err(|e| TemplateError(format!("error calling parseDuration: {e}")))?;
                Val::Num(d.as_secs_f64())
            }
            other => return err(format!("function {other:?} not defined")),
        })
    }
}

/// Prometheus' `humanize`: SI prefixes, 4 significant digits.
pub fn humanize(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", format_g(v, Some(4)))
}

/// Prometheus' `humanize1024`: binary prefixes.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", format_g(v, Some(4)))
}

/// Prometheus' `humanizeDuration`: `1d 2h 3m 4s`, or `1.5s`, `20ms`.
pub fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", format_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let mut sign = "";
        if v < 0.0 {
            sign = "-";
            v = -v;
        }
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {h}h {m}m {s}s");
        }
        if h != 0 {
            return format!("{sign}{h}h {m}m {s}s");
        }
        if m != 0 {
            return format!("{sign}{m}m {s}s");
        }
        return format!("{sign}{}s", format_g(v, Some(4)));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_g(v, Some(4)))
}

/// Go's `time.Time.String()` of a Unix time in seconds, in UTC.
pub(super) fn go_time_string(secs: f64) -> String {
    // Prometheus: model.TimeFromUnixNano(int64(v * 1e9)) — milliseconds, truncated.
    let ms = ((secs * 1e9) as i64).div_euclid(1_000_000);
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => {
            let mut frac = format!("{:03}", ms.rem_euclid(1000));
            while frac.ends_with('0') {
                frac.pop();
            }
            let frac = if frac.is_empty() {
                String::new()
            } else {
                format!(".{frac}")
            };
            format!("{}{frac} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
        }
        None => format_g(secs, Some(4)),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %e %g %q %x %t %%`
/// with flags `-+ 0`, width and precision.
pub fn sprintf_go(format: &str, args: &[f64]) -> String {
    let vals: Vec<Val> = args.iter().map(|f| Val::Num(*f)).collect();
    sprintf(format, &vals)
}

pub(super) fn sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let cs: Vec<char> = format.chars().collect();
    let mut i = 0;
    let mut argi = 0;
    while i < cs.len() {
        if cs[i] != '%' {
            out.push(cs[i]);
            i += 1;
            continue;
        }
        i += 1;
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while i < cs.len() && "-+0 #".contains(cs[i]) {
            match cs[i] {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                _ => {}
            }
            i += 1;
        }
        // Widths and precisions are capped: a template must not allocate without bound.
        let mut width: Option<usize> = None;
        while i < cs.len() && cs[i].is_ascii_digit() {
            width = Some((width.unwrap_or(0) * 10 + cs[i] as usize - '0' as usize).min(1000));
            i += 1;
        }
        let mut prec: Option<usize> = None;
        if i < cs.len() && cs[i] == '.' {
            i += 1;
            let mut p = 0;
            while i < cs.len() && cs[i].is_ascii_digit() {
                p = (p * 10 + cs[i] as usize - '0' as usize).min(1000);
                i += 1;
            }
            prec = Some(p);
        }
        let Some(&verb) = cs.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        argi += 1;
        let num = match arg {
            Val::Num(f) => Some(*f),
            Val::Int(i) => Some(*i as f64),
            _ => None,
        };
        let mut body = match (verb, arg) {
            ('s' | 'v', a) => {
                let mut t = a.print();
                if let (Some(p), Val::Str(_)) = (prec, a) {
                    t = t.chars().take(p).collect();
                }
                t
            }
            ('q', a) => format!("{:?}", a.print()),
            ('t', Val::Bool(b)) => b.to_string(),
            ('d', Val::Int(n)) => n.to_string(),
            ('x', Val::Int(n)) => format!("{n:x}"),
            ('x', Val::Str(t)) => t.bytes().map(|b| format!("{b:02x}")).collect(),
            ('f' | 'F', _) if num.is_some() => format_f(num.unwrap_or(0.0), prec.unwrap_or(6)),
            ('e', _) if num.is_some() => format_e(num.unwrap_or(0.0), prec.unwrap_or(6)),
            ('g', _) if num.is_some() => format_g(num.unwrap_or(0.0), prec),
            (v, a) => format!("%!{v}({}={})", a.type_name(), a.print()),
        };
        if num.is_some() && !body.starts_with('-') && !body.starts_with('%') {
            if plus {
                body.insert(0, '+');
            } else if space {
                body.insert(0, ' ');
            }
        }
        if let Some(w) = width {
            let len = body.chars().count();
            if len < w {
                let pad = w - len;
                if minus {
                    body.push_str(&" ".repeat(pad));
                } else if zero && num.is_some() {
                    let sign = body.starts_with(['-', '+', ' ']);
                    let at = usize::from(sign);
                    body.insert_str(at, &"0".repeat(pad));
                } else {
                    body.insert_str(0, &" ".repeat(pad));
                }
            }
        }
        out.push_str(&body);
    }
    if argi < args.len() {
        let extra: Vec<String> = args[argi..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.print()))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}
