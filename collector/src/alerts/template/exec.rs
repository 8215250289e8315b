//! Execution: the node tree run over the alert's data, with variables, pipelines and
//! a bound on the steps one expansion may take.

use super::*;

/// Upper bound on nodes run by one expansion (`range` over a huge query result).
pub(super) const MAX_STEPS: usize = 100_000;

pub(super) struct Exec<'q> {
    pub(super) vars: Vec<(String, Val)>,
    pub(super) query: Option<QueryFn<'q>>,
    pub(super) external_url: String,
    pub(super) out: String,
    pub(super) steps: usize,
}

impl Exec<'_> {
    pub(super) fn list(&mut self, nodes: &[Node], dot: &Val) -> R<()> {
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

    pub(super) fn lookup_var(&self, name: &str) -> R<Val> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| TemplateError(format!("undefined variable \"{name}\"")))
    }

    pub(super) fn field(v: Val, fields: &[String]) -> R<Val> {
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

    pub(super) fn pipeline(&mut self, p: &Pipeline, dot: &Val) -> R<Val> {
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

    pub(super) fn arg(&mut self, a: &Arg, dot: &Val) -> R<Val> {
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

    pub(super) fn command(&mut self, cmd: &[Arg], dot: &Val, piped: Option<Val>) -> R<Val> {
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
}
