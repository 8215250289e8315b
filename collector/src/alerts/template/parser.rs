//! Parsing: an action's tokens into a pipeline, the pieces into the node tree
//! (`if`/`range`/`with`/`else`/`end`).

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arg {
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
pub(super) struct Pipeline {
    /// `$x :=` (declare) or `$x =` (assign); `range $k, $v :=` has two.
    pub(super) vars: Vec<String>,
    pub(super) declare: bool,
    pub(super) cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]

pub(super) struct PipeParser<'a> {
    toks: &'a [Tok],
    pos: usize,
    line: usize,
}

impl PipeParser<'_> {
    pub(super) fn pipeline(&mut self, allow_decl: bool, nested: bool) -> R<Pipeline> {
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

    pub(super) fn operand(&mut self) -> R<Arg> {
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

pub(super) fn parse_pipeline(body: &str, line: usize, allow_decl: bool) -> R<Pipeline> {
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

pub(super) enum Stop {
    End,
    Else(Option<String>, usize),
    Eof,
}

pub(super) fn parse_list(
    pieces: &[(bool, String, usize)],
    pos: &mut usize,
) -> R<(Vec<Node>, Stop)> {
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

pub(super) fn parse_block(
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
