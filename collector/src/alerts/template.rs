//! The Go `text/template` language as Prometheus uses it in alert labels and
//! annotations, written by hand: no Rust crate implements Go templates (the Jinja and
//! Handlebars engines differ in syntax and in how values print).
//!
//! Every template gets Prometheus' preamble, so both spellings work:
//!
//! ```text
//! {{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}
//! {{$externalURL := .ExternalURL}}{{$value := .Value}}
//!
//! {{ $labels.instance }} is down ({{ $value | humanize }})
//! {{ if gt $value 0.9 }}critical{{ else }}warning{{ end }}
//! {{ range $k, $v := .Labels }}{{ $k }}={{ $v }} {{ end }}
//! {{ printf "%.2f" $value }}   {{ with query "up" }}{{ . | first | value }}{{ end }}
//! ```
//! Covered: text, `{{- -}}` trimming, comments, pipelines, parenthesised pipelines,
//! variables (declare and assign), fields of `.` and of variables, `if`/`else if`/`else`,
//! `range` (maps, lists), `with`, string/raw-string/number/bool literals, and the
//! functions of Go's template package and of Prometheus (`humanize*`, `printf`,
//! `query`, `first`, `value`, `label`, `reReplaceAll`, `title`, …). Missing map keys
//! print as empty strings (Prometheus runs templates with `missingkey=zero`). Numbers
//! print as Go's `%v` does ([`super::gofmt`]). `define`/`template`/`block` are not
//! supported and are rejected at load time.

use super::gofmt::{format_e, format_f, format_g, format_v};
use std::collections::BTreeMap;

/// A parse error (found at load time) or an execution error (when an alert fires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type R<T> = Result<T, TemplateError>;

fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(TemplateError(msg.into()))
}

/// A sample as `query` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySample {
    /// Labels, the metric name included.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Runs a PromQL instant query for the `query` template function.
pub type QueryFn<'a> = &'a dyn Fn(&str) -> Result<Vec<QuerySample>, String>;

/// What a template sees: Prometheus' `AlertTemplateData`.
#[derive(Debug, Clone, Default)]
pub struct TemplateData {
    /// The alert's labels (`.Labels`, `$labels`).
    pub labels: BTreeMap<String, String>,
    /// External labels (`.ExternalLabels`, `$externalLabels`).
    pub external_labels: BTreeMap<String, String>,
    /// External URL (`.ExternalURL`, `$externalURL`).
    pub external_url: String,
    /// The sample value (`.Value`, `$value`).
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Nil,
    Bool(bool),
    Num(f64),
    Int(i64),
    Str(String),
    Map(BTreeMap<String, String>),
    Struct(BTreeMap<String, Val>),
    List(Vec<Val>),
    Sample(QuerySample),
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::Nil => false,
            Val::Bool(b) => *b,
            Val::Num(f) => *f != 0.0,
            Val::Int(i) => *i != 0,
            Val::Str(s) => !s.is_empty(),
            Val::Map(m) => !m.is_empty(),
            Val::Struct(_) | Val::Sample(_) => true,
            Val::List(l) => !l.is_empty(),
        }
    }

    /// Go's `fmt.Sprint` of the value.
    fn print(&self) -> String {
        match self {
            Val::Nil => "<no value>".into(),
            Val::Bool(b) => b.to_string(),
            Val::Num(f) => format_v(*f),
            Val::Int(i) => i.to_string(),
            Val::Str(s) => s.clone(),
            Val::Map(m) => {
                let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", inner.join(" "))
            }
            Val::Struct(m) => {
                let inner: Vec<String> = m.values().map(|v| v.print()).collect();
                format!("{{{}}}", inner.join(" "))
            }
            Val::List(l) => {
                let inner: Vec<String> = l.iter().map(|v| v.print()).collect();
                format!("[{}]", inner.join(" "))
            }
            Val::Sample(s) => {
                let inner: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{map[{}] {}}}", inner.join(" "), format_v(s.value))
            }
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(_) => "bool",
            Val::Num(_) => "float64",
            Val::Int(_) => "int",
            Val::Str(_) => "string",
            Val::Map(_) => "map[string]string",
            Val::Struct(_) => "struct",
            Val::List(_) => "slice",
            Val::Sample(_) => "*template.sample",
        }
    }

    /// Prometheus' `convertToFloat`: numbers, and strings that parse as numbers.
    fn to_float(&self) -> R<f64> {
        match self {
            Val::Num(f) => Ok(*f),
            Val::Int(i) => Ok(*i as f64),
            Val::Str(s) => s
                .trim()
                .parse::<f64>()
                .or_else(|_| match s.trim() {
                    "NaN" => Ok(f64::NAN),
                    "+Inf" | "Inf" => Ok(f64::INFINITY),
                    "-Inf" => Ok(f64::NEG_INFINITY),
                    _ => Err(()),
                })
                .or_else(|_| err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))),
            other => err(format!("can't convert {} to float", other.type_name())),
        }
    }
}

// ---------------------------------------------------------------- lexing and parsing

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Dot,
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(f64),
    Int(i64),
    Bool(bool),
    Nil,
    Func(String),
    Pipe(Box<Pipeline>),
}

#[derive(Debug, Clone, PartialEq)]
struct Pipeline {
    /// `$x :=` (declare) or `$x =` (assign); `range $k, $v :=` has two.
    vars: Vec<String>,
    declare: bool,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

const FUNCS: &[&str] = &[
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

/// Splits the source into text and action pieces, applying `{{-`/`-}}` trimming and
/// dropping comments. Actions keep their 1-based line for error messages.
fn split(src: &str) -> R<Vec<(bool, String, usize)>> {
    let mut out: Vec<(bool, String, usize)> = Vec::new();
    let mut rest = src;
    let mut line = 1usize;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            let mut t = rest.to_string();
            if trim_next {
                t = t.trim_start().to_string();
            }
            out.push((false, t, line));
            break;
        };
        let mut text = rest[..open].to_string();
        line += text.matches('\n').count();
        let after = &rest[open + 2..];
        let trim_left = after.starts_with("- ")
            || after.starts_with("-\t")
            || after.starts_with("-\n")
            || after.starts_with("-\r");
        if trim_next {
            text = text.trim_start().to_string();
        }
        if trim_left {
            text = text.trim_end().to_string();
        }
        if !text.is_empty() {
            out.push((false, text, line));
        }
        let body_start = if trim_left { &after[1..] } else { after };
        // Find the closing delimiter outside string literals.
        let bytes = body_start.as_bytes();
        let mut i = 0;
        let mut close = None;
        let mut in_str: Option<u8> = None;
        let comment = body_start.trim_start().starts_with("/*");
        while i < bytes.len() {
            let c = bytes[i];
            if comment {
                // Byte-wise: `i` walks bytes and may sit inside a multi-byte character.
                if bytes[i..].starts_with(b"*/") {
                    let tail = body_start[i + 2..].trim_start_matches([' ', '\t', '\n', '\r']);
                    let tail = tail
                        .strip_prefix('-')
                        .map(|t| t.trim_start())
                        .unwrap_or(tail);
                    if tail.starts_with("}}") {
                        let skipped = body_start.len() - tail.len();
                        close = Some((skipped, false));
                        break;
                    }
                }
                i += 1;
                continue;
            }
            match in_str {
                Some(q) => {
                    if c == b'\\' && q == b'"' {
                        i += 2;
                        continue;
                    }
                    if c == q {
                        in_str = None;
                    }
                }
                None => {
                    if c == b'"' || c == b'`' || c == b'\'' {
                        in_str = Some(c);
                    } else if bytes[i..].starts_with(b" -}}")
                        || bytes[i..].starts_with(b"\t-}}")
                        || bytes[i..].starts_with(b"\n-}}")
                    {
                        close = Some((i, true));
                        break;
                    } else if bytes[i..].starts_with(b"}}") {
                        close = Some((i, false));
                        break;
                    }
                }
            }
            i += 1;
        }
        let Some((end, trim_right)) = close else {
            return err(format!("{line}: unclosed action"));
        };
        let body = &body_start[..end];
        let consumed = if trim_right { end + 4 } else { end + 2 };
        if !comment {
            out.push((true, body.to_string(), line));
        } else if !body.trim_end().ends_with("*/") {
            return err(format!("{line}: unclosed comment"));
        }
        line += body.matches('\n').count();
        rest = &body_start[consumed..];
        // A comment's own closing trim marker sits before `}}`.
        let comment_trim = comment && {
            let t = body.trim_end();
            t.ends_with('-')
                || body_start[..consumed]
                    .trim_end_matches('}')
                    .trim_end()
                    .ends_with('-')
        };
        trim_next = trim_right || comment_trim;
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(String),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

fn lex(s: &str, line: usize) -> R<Vec<Tok>> {
    let mut toks = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '|' {
            toks.push(Tok::Pipe);
            i += 1;
        } else if c == '(' {
            toks.push(Tok::LParen);
            i += 1;
        } else if c == ')' {
            toks.push(Tok::RParen);
            i += 1;
        } else if c == ',' {
            toks.push(Tok::Comma);
            i += 1;
        } else if c == ':' && cs.get(i + 1) == Some(&'=') {
            toks.push(Tok::Declare);
            i += 2;
        } else if c == '=' {
            toks.push(Tok::Assign);
            i += 1;
        } else if c == '"' {
            let mut out = String::new();
            i += 1;
            loop {
                match cs.get(i) {
                    None => return err(format!("{line}: unterminated quoted string")),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let e = cs.get(i + 1).copied();
                        out.push(match e {
                            Some('n') => '\n',
                            Some('t') => '\t',
                            Some('r') => '\r',
                            Some('\\') => '\\',
                            Some('"') => '"',
                            Some('\'') => '\'',
                            Some(o) => {
                                return err(format!("{line}: unknown escape sequence \\{o}"))
                            }
                            None => return err(format!("{line}: unterminated quoted string")),
                        });
                        i += 2;
                    }
                    Some(&ch) => {
                        out.push(ch);
                        i += 1;
                    }
                }
            }
            toks.push(Tok::Str(out));
        } else if c == '`' {
            let start = i + 1;
            let Some(len) = cs[start..].iter().position(|&x| x == '`') else {
                return err(format!("{line}: unterminated raw quoted string"));
            };
            toks.push(Tok::Str(cs[start..start + len].iter().collect()));
            i = start + len + 1;
        } else if c == '.' || c == '$' {
            let start = i;
            i += 1;
            while i < cs.len() && (is_ident(cs[i]) || cs[i] == '.') {
                i += 1;
            }
            let word: String = cs[start..i].iter().collect();
            if c == '.' && word.len() > 1 && word[1..].starts_with(|d: char| d.is_ascii_digit()) {
                toks.push(Tok::Num(word));
                continue;
            }
            let parts: Vec<&str> = word.split('.').collect();
            if c == '.' {
                let fields: Vec<String> = parts[1..]
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| p.to_string())
                    .collect();
                toks.push(Tok::Field(fields));
            } else {
                let fields = parts[1..].iter().map(|p| p.to_string()).collect();
                if parts[1..].iter().any(|p| p.is_empty()) {
                    return err(format!("{line}: bad variable {word:?}"));
                }
                toks.push(Tok::Var(parts[0].to_string(), fields));
            }
        } else if c.is_ascii_digit()
            || ((c == '-' || c == '+')
                && cs
                    .get(i + 1)
                    .is_some_and(|d| d.is_ascii_digit() || *d == '.'))
        {
            let start = i;
            i += 1;
            while i < cs.len()
                && (cs[i].is_ascii_alphanumeric()
                    || cs[i] == '.'
                    || ((cs[i] == '-' || cs[i] == '+') && matches!(cs[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            toks.push(Tok::Num(cs[start..i].iter().collect()));
        } else if is_ident(c) {
            let start = i;
            while i < cs.len() && is_ident(cs[i]) {
                i += 1;
            }
            toks.push(Tok::Word(cs[start..i].iter().collect()));
        } else if c == '\'' {
            // A Go character constant: an int.
            let ch = cs.get(i + 1).copied();
            if cs.get(i + 2) != Some(&'\'') || ch.is_none() {
                return err(format!("{line}: malformed character constant"));
            }
            toks.push(Tok::Num((ch.map(|c| c as u32).unwrap_or(0)).to_string()));
            i += 3;
        } else {
            return err(format!("{line}: unexpected {c:?} in command"));
        }
    }
    Ok(toks)
}

struct PipeParser<'a> {
    toks: &'a [Tok],
    pos: usize,
    line: usize,
}

impl PipeParser<'_> {
    fn pipeline(&mut self, allow_decl: bool, nested: bool) -> R<Pipeline> {
        let mut vars = Vec::new();
        let mut declare = false;
        if allow_decl {
            // `$x :=`, `$x =`, `$k, $v :=`
            let save = self.pos;
            let mut names = Vec::new();
            while let Some(Tok::Var(n, f)) = self.toks.get(self.pos) {
                if !f.is_empty() {
                    break;
                }
                names.push(n.clone());
                self.pos += 1;
                if self.toks.get(self.pos) == Some(&Tok::Comma) {
                    self.pos += 1;
                    continue;
                }
                break;
            }
            match self.toks.get(self.pos) {
                Some(Tok::Declare) if !names.is_empty() => {
                    declare = true;
                    vars = names;
                    self.pos += 1;
                }
                Some(Tok::Assign) if names.len() == 1 => {
                    vars = names;
                    self.pos += 1;
                }
                _ => self.pos = save,
            }
        }
        let mut cmds = Vec::new();
        loop {
            let mut args = Vec::new();
            while let Some(t) = self.toks.get(self.pos) {
                match t {
                    Tok::Pipe => break,
                    Tok::RParen if nested => break,
                    Tok::RParen => {
                        return err(format!("{}: unexpected \")\" in command", self.line))
                    }
                    _ => {}
                }
                args.push(self.operand()?);
            }
            if args.is_empty() {
                return err(format!("{}: missing value for command", self.line));
            }
            cmds.push(args);
            match self.toks.get(self.pos) {
                Some(Tok::Pipe) => {
                    self.pos += 1;
                }
                _ => break,
            }
        }
        Ok(Pipeline {
            vars,
            declare,
            cmds,
        })
    }

    fn operand(&mut self) -> R<Arg> {
        let line = self.line;
        let t = self.toks[self.pos].clone();
        self.pos += 1;
        Ok(match t {
            Tok::Field(f) if f.is_empty() => Arg::Dot,
            Tok::Field(f) => Arg::Field(f),
            Tok::Var(n, f) => Arg::Var(n, f),
            Tok::Str(s) => Arg::Str(s),
            Tok::Num(n) => {
                if let Ok(i) = n.parse::<i64>() {
                    Arg::Int(i)
                } else if let Some(h) = n.strip_prefix("0x") {
                    Arg::Int(
                        i64::from_str_radix(h, 16)
                            .or_else(|_| err(format!("{line}: bad number syntax: {n:?}")))?,
                    )
                } else {
                    Arg::Num(
                        n.parse::<f64>()
                            .or_else(|_| err(format!("{line}: bad number syntax: {n:?}")))?,
                    )
                }
            }
            Tok::Word(w) => match w.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ if FUNCS.contains(&w.as_str()) => Arg::Func(w),
                _ => return err(format!("{line}: function {w:?} not defined")),
            },
            Tok::LParen => {
                let p = self.pipeline(true, true)?;
                if self.toks.get(self.pos) != Some(&Tok::RParen) {
                    return err(format!("{line}: unclosed left paren"));
                }
                self.pos += 1;
                Arg::Pipe(Box::new(p))
            }
            other => return err(format!("{line}: unexpected {other:?} in operand")),
        })
    }
}

fn parse_pipeline(body: &str, line: usize, allow_decl: bool) -> R<Pipeline> {
    let toks = lex(body, line)?;
    let mut p = PipeParser {
        toks: &toks,
        pos: 0,
        line,
    };
    let pipe = p.pipeline(allow_decl, false)?;
    if p.pos != toks.len() {
        return err(format!("{line}: unexpected token in command"));
    }
    Ok(pipe)
}

enum Stop {
    End,
    Else(Option<String>, usize),
    Eof,
}

fn parse_list(pieces: &[(bool, String, usize)], pos: &mut usize) -> R<(Vec<Node>, Stop)> {
    let mut nodes = Vec::new();
    while *pos < pieces.len() {
        let (action, text, line) = &pieces[*pos];
        *pos += 1;
        if !action {
            nodes.push(Node::Text(text.clone()));
            continue;
        }
        let body = text.trim();
        let (kw, rest) = match body.split_once(|c: char| c.is_whitespace()) {
            Some((k, r)) => (k, r.trim()),
            None => (body, ""),
        };
        match kw {
            "end" => return Ok((nodes, Stop::End)),
            "else" => {
                let rest = (!rest.is_empty()).then(|| rest.to_string());
                return Ok((nodes, Stop::Else(rest, *line)));
            }
            "if" | "range" | "with" => {
                let node = parse_block(kw, rest, *line, pieces, pos)?;
                nodes.push(node);
            }
            "define" | "template" | "block" | "break" | "continue" => {
                return err(format!(
                    "{line}: {kw:?} is not supported in alert templates"
                ));
            }
            "" => return err(format!("{line}: missing value for command")),
            _ => nodes.push(Node::Action(parse_pipeline(body, *line, true)?)),
        }
    }
    Ok((nodes, Stop::Eof))
}

fn parse_block(
    kw: &str,
    cond: &str,
    line: usize,
    pieces: &[(bool, String, usize)],
    pos: &mut usize,
) -> R<Node> {
    if cond.is_empty() {
        return err(format!("{line}: missing value for {kw}"));
    }
    let pipe = parse_pipeline(cond, line, true)?;
    let (body, stop) = parse_list(pieces, pos)?;
    let els = match stop {
        Stop::End => Vec::new(),
        Stop::Eof => return err(format!("{line}: unexpected EOF: {kw} without end")),
        Stop::Else(None, _) => {
            let (els, stop) = parse_list(pieces, pos)?;
            match stop {
                Stop::End => els,
                _ => return err(format!("{line}: expected end after else")),
            }
        }
        Stop::Else(Some(chain), l) => {
            // `else if …` / `else with …`: a nested block that shares our `end`.
            let (k2, r2) = chain
                .split_once(|c: char| c.is_whitespace())
                .unwrap_or((&chain, ""));
            if k2 != "if" && k2 != "with" {
                return err(format!("{l}: unexpected {chain:?} after else"));
            }
            vec![parse_block(k2, r2.trim(), l, pieces, pos)?]
        }
    };
    Ok(match kw {
        "if" => Node::If(pipe, body, els),
        "range" => Node::Range(pipe, body, els),
        _ => Node::With(pipe, body, els),
    })
}

const PREAMBLE_VARS: [(&str, &str); 4] = [
    ("labels", "Labels"),
    ("externalLabels", "ExternalLabels"),
    ("externalURL", "ExternalURL"),
    ("value", "Value"),
];

impl Template {
    /// Parses a template (Prometheus' preamble variables are predeclared).
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let pieces = split(src)?;
        let mut pos = 0;
        let (nodes, stop) = parse_list(&pieces, &mut pos)?;
        match stop {
            Stop::Eof => {}
            Stop::End => return err("unexpected {{end}}"),
            Stop::Else(..) => return err("unexpected {{else}}"),
        }
        let t = Template { nodes };
        t.check_vars()?;
        Ok(t)
    }

    /// Go rejects undefined variables at parse time; so do we.
    fn check_vars(&self) -> R<()> {
        fn pipe(p: &Pipeline, scope: &mut Vec<String>) -> R<()> {
            for cmd in &p.cmds {
                for a in cmd {
                    match a {
                        Arg::Var(n, _) if !scope.iter().any(|s| s == n) => {
                            return err(format!("undefined variable \"{n}\""))
                        }
                        Arg::Pipe(inner) => pipe(inner, scope)?,
                        _ => {}
                    }
                }
            }
            if p.declare {
                scope.extend(p.vars.iter().cloned());
            } else {
                for v in &p.vars {
                    if !scope.iter().any(|s| s == v) {
                        return err(format!("undefined variable \"{v}\""));
                    }
                }
            }
            Ok(())
        }
        fn list(nodes: &[Node], scope: &mut Vec<String>) -> R<()> {
            for n in nodes {
                match n {
                    Node::Text(_) => {}
                    Node::Action(p) => pipe(p, scope)?,
                    Node::If(p, a, b) | Node::Range(p, a, b) | Node::With(p, a, b) => {
                        let depth = scope.len();
                        pipe(p, scope)?;
                        list(a, scope)?;
                        scope.truncate(depth);
                        list(b, scope)?;
                        scope.truncate(depth);
                    }
                }
            }
            Ok(())
        }
        let mut scope: Vec<String> = vec!["$".into()];
        scope.extend(PREAMBLE_VARS.iter().map(|(v, _)| format!("${v}")));
        list(&self.nodes, &mut scope)
    }

    /// Runs the template over `data`. `query` answers the `query` function (None: it
    /// fails with an error).
    pub fn execute(
        &self,
        data: &TemplateData,
        query: Option<QueryFn<'_>>,
    ) -> Result<String, TemplateError> {
        let mut dot = BTreeMap::new();
        dot.insert("Labels".to_string(), Val::Map(data.labels.clone()));
        dot.insert(
            "ExternalLabels".to_string(),
            Val::Map(data.external_labels.clone()),
        );
        dot.insert(
            "ExternalURL".to_string(),
            Val::Str(data.external_url.clone()),
        );
        dot.insert("Value".to_string(), Val::Num(data.value));
        let dot = Val::Struct(dot);
        let mut vars: Vec<(String, Val)> = vec![("$".into(), dot.clone())];
        for (v, field) in PREAMBLE_VARS {
            let val = match &dot {
                Val::Struct(m) => m.get(field).cloned().unwrap_or(Val::Nil),
                _ => Val::Nil,
            };
            vars.push((format!("${v}"), val));
        }
        let mut ex = Exec {
            vars,
            query,
            external_url: data.external_url.clone(),
            out: String::new(),
            steps: 0,
        };
        ex.list(&self.nodes, &dot)?;
        Ok(ex.out)
    }
}

/// Parses and runs `src` in one go, as Prometheus expands a rule's labels and
/// annotations; an error becomes `<error expanding template: …>` in the text, as in
/// Prometheus.
pub fn expand(src: &str, data: &TemplateData, query: Option<QueryFn<'_>>) -> String {
    if !src.contains("{{") {
        return src.to_string();
    }
    match Template::parse(src).and_then(|t| t.execute(data, query)) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

// ---------------------------------------------------------------- execution

/// Upper bound on nodes run by one expansion (`range` over a huge query result).
const MAX_STEPS: usize = 100_000;

struct Exec<'q> {
    vars: Vec<(String, Val)>,
    query: Option<QueryFn<'q>>,
    external_url: String,
    out: String,
    steps: usize,
}

impl Exec<'_> {
    fn list(&mut self, nodes: &[Node], dot: &Val) -> R<()> {
        for n in nodes {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return err("template runs too long");
            }
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.vars.is_empty() {
                        self.out.push_str(&v.print());
                    }
                }
                Node::If(p, a, b) => {
                    let depth = self.vars.len();
                    let v = self.pipeline(p, dot)?;
                    if v.truthy() {
                        self.list(a, dot)?;
                    } else {
                        self.list(b, dot)?;
                    }
                    self.vars.truncate(depth);
                }
                Node::With(p, a, b) => {
                    let depth = self.vars.len();
                    let v = self.pipeline(p, dot)?;
                    if v.truthy() {
                        self.list(a, &v)?;
                    } else {
                        self.list(b, dot)?;
                    }
                    self.vars.truncate(depth);
                }
                Node::Range(p, a, b) => {
                    let depth = self.vars.len();
                    let mut pp = p.clone();
                    let names = std::mem::take(&mut pp.vars);
                    let v = self.pipeline(&pp, dot)?;
                    let items: Vec<(Val, Val)> = match v {
                        Val::Map(m) => m
                            .into_iter()
                            .map(|(k, v)| (Val::Str(k), Val::Str(v)))
                            .collect(),
                        Val::List(l) => l
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Val::Int(i as i64), v))
                            .collect(),
                        Val::Nil => Vec::new(),
                        Val::Int(_) => {
                            return err("range can't iterate over an integer (Go 1.19 templates)")
                        }
                        other => return err(format!("range can't iterate over {}", other.print())),
                    };
                    if items.is_empty() {
                        self.list(b, dot)?;
                    }
                    for (k, v) in items {
                        let inner = self.vars.len();
                        match names.as_slice() {
                            [one] => self.vars.push((one.clone(), v.clone())),
                            [kn, vn] => {
                                self.vars.push((kn.clone(), k));
                                self.vars.push((vn.clone(), v.clone()));
                            }
                            _ => {}
                        }
                        self.list(a, &v)?;
                        self.vars.truncate(inner);
                    }
                    self.vars.truncate(depth);
                }
            }
        }
        Ok(())
    }

    fn lookup_var(&self, name: &str) -> R<Val> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| TemplateError(format!("undefined variable \"{name}\"")))
    }

    fn field(v: Val, fields: &[String]) -> R<Val> {
        let mut cur = v;
        for f in fields {
            cur = match cur {
                Val::Map(m) => Val::Str(m.get(f).cloned().unwrap_or_default()),
                Val::Struct(m) => match m.get(f) {
                    Some(v) => v.clone(),
                    None => {
                        return err(format!(
                            "can't evaluate field {f} in type *template.tmplData"
                        ))
                    }
                },
                Val::Sample(s) => match f.as_str() {
                    "Labels" => Val::Map(s.labels.clone()),
                    "Value" => Val::Num(s.value),
                    _ => return err(format!("can't evaluate field {f} in type *template.sample")),
                },
                Val::Nil => Val::Nil,
                other => {
                    return err(format!(
                        "can't evaluate field {f} in type {}",
                        other.type_name()
                    ))
                }
            };
        }
        Ok(cur)
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Val) -> R<Val> {
        let mut piped: Option<Val> = None;
        for cmd in &p.cmds {
            piped = Some(self.command(cmd, dot, piped)?);
        }
        let v = piped.unwrap_or(Val::Nil);
        if !p.vars.is_empty() {
            if p.declare {
                self.vars.push((p.vars[0].clone(), v.clone()));
            } else if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| *n == p.vars[0]) {
                slot.1 = v.clone();
            }
        }
        Ok(v)
    }

    fn arg(&mut self, a: &Arg, dot: &Val) -> R<Val> {
        Ok(match a {
            Arg::Dot => dot.clone(),
            Arg::Field(f) => Self::field(dot.clone(), f)?,
            Arg::Var(n, f) => Self::field(self.lookup_var(n)?, f)?,
            Arg::Str(s) => Val::Str(s.clone()),
            Arg::Num(n) => Val::Num(*n),
            Arg::Int(i) => Val::Int(*i),
            Arg::Bool(b) => Val::Bool(*b),
            Arg::Nil => Val::Nil,
            Arg::Func(f) => self.call(f, Vec::new())?,
            Arg::Pipe(p) => {
                let depth = self.vars.len();
                let v = self.pipeline(p, dot)?;
                self.vars.truncate(depth);
                v
            }
        })
    }

    fn command(&mut self, cmd: &[Arg], dot: &Val, piped: Option<Val>) -> R<Val> {
        match &cmd[0] {
            Arg::Func(f) => {
                let mut args = Vec::with_capacity(cmd.len());
                for a in &cmd[1..] {
                    args.push(self.arg(a, dot)?);
                }
                if let Some(p) = piped {
                    args.push(p);
                }
                self.call(f, args)
            }
            first => {
                if cmd.len() > 1 || piped.is_some() {
                    return err(format!("can't give argument to non-function {first:?}"));
                }
                self.arg(first, dot)
            }
        }
    }

    fn call(&mut self, f: &str, args: Vec<Val>) -> R<Val> {
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

fn compare(a: &Val, b: &Val) -> R<std::cmp::Ordering> {
    use std::cmp::Ordering;
    let num = |v: &Val| match v {
        Val::Num(f) => Some(*f),
        Val::Int(i) => Some(*i as f64),
        _ => None,
    };
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Ok(x.cmp(y)),
        (Val::Nil, Val::Nil) => Ok(Ordering::Equal),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => Ok(x.partial_cmp(&y).unwrap_or(Ordering::Less)),
            _ => err(format!(
                "error calling comparison: incompatible types for comparison: {} and {}",
                a.type_name(),
                b.type_name()
            )),
        },
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
fn go_time_string(secs: f64) -> String {
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

fn sprintf(format: &str, args: &[Val]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> TemplateData {
        let mut labels = BTreeMap::new();
        labels.insert("instance".to_string(), "host:9100".to_string());
        labels.insert("job".to_string(), "node".to_string());
        TemplateData {
            labels,
            external_labels: BTreeMap::from([("dc".to_string(), "eu".to_string())]),
            external_url: "http://calm:9400".into(),
            value: 0.123456,
        }
    }

    fn run(src: &str) -> String {
        Template::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .execute(&data(), None)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn prometheus_idioms() {
        assert_eq!(run("{{ $labels.instance }} down"), "host:9100 down");
        assert_eq!(run("{{ .Labels.job }}/{{ $labels.missing }}/"), "node//");
        assert_eq!(run("{{ $value }}"), "0.123456");
        assert_eq!(run("{{ .Value | humanizePercentage }}"), "12.35%");
        assert_eq!(run("{{ humanize 1234567 }}"), "1.235M");
        assert_eq!(run("{{ humanize 0.001234 }}"), "1.234m");
        assert_eq!(run("{{ 3725 | humanizeDuration }}"), "1h 2m 5s");
        assert_eq!(run("{{ humanizeDuration 0.25 }}"), "250ms");
        assert_eq!(run("{{ humanize1024 2048 }}"), "2ki");
        assert_eq!(run("{{ printf \"%.2f\" $value }}"), "0.12");
        assert_eq!(run("{{ printf \"%s=%d\" \"a\" 3 }}"), "a=3");
        assert_eq!(
            run("{{ if gt $value 0.1 }}high{{ else }}low{{ end }}"),
            "high"
        );
        assert_eq!(
            run(
                "{{ if lt $value 0.1 }}a{{ else if eq $labels.job \"node\" }}b{{ else }}c{{ end }}"
            ),
            "b"
        );
        assert_eq!(
            run("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}"),
            "instance=host:9100;job=node;"
        );
        assert_eq!(
            run("{{ $externalLabels.dc }} {{ $externalURL }}"),
            "eu http://calm:9400"
        );
        assert_eq!(run("a  {{- \" b \" -}}  c"), "a b c");
        assert_eq!(run("{{/* note */}}x"), "x");
        assert_eq!(run("{{ $x := 2 }}{{ $x }}"), "2");
        assert_eq!(
            run("{{ with $labels.job }}job={{ . }}{{ end }}"),
            "job=node"
        );
        assert_eq!(
            run("{{ $labels.instance | reReplaceAll \":.*\" \"\" | toUpper }}"),
            "HOST"
        );
        assert_eq!(run("{{ index $labels \"job\" }}"), "node");
        assert_eq!(run("{{ title \"hello world\" }}"), "Hello World");
        assert_eq!(
            run("{{ humanizeTimestamp 1435781451.781 }}"),
            "2015-07-01 20:10:51.78 +0000 UTC"
        );
        assert_eq!(run("{{ .Labels }}"), "map[instance:host:9100 job:node]");
    }

    #[test]
    fn query_function() {
        let q = |e: &str| -> Result<Vec<QuerySample>, String> {
            assert_eq!(e, "up");
            Ok(vec![QuerySample {
                labels: BTreeMap::from([("job".to_string(), "x".to_string())]),
                value: 2.0,
            }])
        };
        let t = Template::parse("{{ with query \"up\" }}{{ . | first | value }} {{ . | first | label \"job\" }}{{ end }}").unwrap();
        assert_eq!(t.execute(&data(), Some(&q)).unwrap(), "2 x");
    }

    #[test]
    fn errors_at_parse_time() {
        for bad in [
            "{{ $labels.x ",
            "{{ nosuchfunc 1 }}",
            "{{ if $value }}x",
            "{{ end }}",
            "{{ $undefined }}",
            "{{ \"unterminated }}",
            "{{ }}",
            "{{ define \"x\" }}{{ end }}",
            // Found by the alert_rules fuzz target: a multi-byte character right after
            // `{{` once made the delimiter search slice inside it (a panic).
            "{{\u{1fb}",
            "{{/*\u{1fb}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad} parsed");
        }
        assert!(expand("{{ humanize \"abc\" }}", &data(), None)
            .starts_with("<error expanding template: "));
    }
}
