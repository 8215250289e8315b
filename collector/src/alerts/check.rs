//! `calm-collector check rules FILE...`: validates rule files as `promtool check
//! rules` does and says so.
//!
//! ```text
//! $ calm-collector check rules good.yml bad.yml
//! Checking good.yml
//!   SUCCESS: 3 rules found
//!
//! Checking bad.yml
//!   FAILED:
//! bad.yml:7: group "g", rule 2 (alert "Down") could not parse expression: …
//! $ echo $?
//! 1
//! ```

use super::rules::parse_rules;
use std::path::PathBuf;

/// Subcommands of `calm-collector` (none: run the server).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Check configuration files, as promtool does.
    Check {
        /// What to check.
        #[command(subcommand)]
        what: CheckWhat,
    },
}

/// What `check` checks.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CheckWhat {
    /// Check Prometheus rule files: YAML, expressions, templates, durations, duplicates.
    Rules {
        /// Rule files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// Runs the command; returns the process exit code (0 all good, 1 a file failed).
pub fn run(cmd: &Command) -> i32 {
    let Command::Check {
        what: CheckWhat::Rules { files },
    } = cmd;
    let mut failed = false;
    for f in files {
        let name = f.display().to_string();
        println!("Checking {name}");
        let result = std::fs::read_to_string(f)
            .map_err(|e| vec![format!("{name}: cannot read the file: {e}")])
            .and_then(|text| {
                parse_rules(&name, &text).map_err(|es| es.iter().map(|e| e.to_string()).collect())
            });
        match result {
            Ok(groups) => {
                let n: usize = groups.iter().map(|g| g.rules.len()).sum();
                println!("  SUCCESS: {n} rules found");
            }
            Err(errors) => {
                failed = true;
                eprintln!("  FAILED:");
                for e in errors {
                    eprintln!("{e}");
                }
            }
        }
        println!();
    }
    i32::from(failed)
}
