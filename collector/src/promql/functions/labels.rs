//! Label functions: `label_replace` and `label_join`.

use super::{string_arg, vector_arg};
use crate::promql::eval::Evaluator;
use crate::promql::value::{Value, METRIC_NAME};
use crate::promql::{Error, Result};
use promql_parser::parser::Call;

fn compile_anchored(re: &str, func: &str) -> Result<regex::Regex> {
    regex::Regex::new(&format!("^(?s:{re})$"))
        .map_err(|e| Error::exec(format!("invalid regular expression in {func}(): {re}: {e}")))
}

fn check_label_name(n: &str, func: &str) -> Result<()> {
    if n.is_empty() {
        return Err(Error::exec(format!(
            "invalid destination label name in {func}(): {n}"
        )));
    }
    Ok(())
}

pub(super) fn label_replace(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let v = vector_arg(ev, c, 0, t)?;
    let dst = string_arg(ev, c, 1, t)?;
    let repl = string_arg(ev, c, 2, t)?;
    let src = string_arg(ev, c, 3, t)?;
    let re_s = string_arg(ev, c, 4, t)?;
    let re = compile_anchored(&re_s, "label_replace")?;
    check_label_name(&dst, "label_replace")?;
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        let sv = s.labels.get(&src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&sv) {
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            s.labels.set(&dst, &res);
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
        }
        s.t = t;
        out.push(s);
    }
    Ok(Value::Vector(out))
}

pub(super) fn label_join(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let v = vector_arg(ev, c, 0, t)?;
    let dst = string_arg(ev, c, 1, t)?;
    let sep = string_arg(ev, c, 2, t)?;
    let mut srcs = Vec::new();
    for i in 3..c.args.args.len() {
        srcs.push(string_arg(ev, c, i, t)?);
    }
    check_label_name(&dst, "label_join")?;
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
        let joined = joined.join(&sep);
        s.labels.set(&dst, &joined);
        if dst == METRIC_NAME {
            s.drop_name = false;
        }
        s.t = t;
        out.push(s);
    }
    Ok(Value::Vector(out))
}
