//! Lexing: the source split into text and `{{ action }}` pieces (trimming, comments),
//! and an action's text into tokens.

use super::*;

/// Splits the source into text and action pieces, applying `{{-`/`-}}` trimming and
/// dropping comments. Actions keep their 1-based line for error messages.
pub(super) fn split(src: &str) -> R<Vec<(bool, String, usize)>> {
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
pub(super) enum Tok {
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

pub(super) fn lex(s: &str, line: usize) -> R<Vec<Tok>> {
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
