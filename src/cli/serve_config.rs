//! `sandbox serve --config FILE`: the server's TOML configuration file.
//!
//! This module owns reading that file and turning it into command-line
//! arguments. Its keys are `serve`'s long flag names as spelled on the
//! command line (`listen`, `work-dir`, `allow-image`, ...), so every flag
//! can be set there and nothing is declared twice: each key not given on
//! the command line (clap's `ValueSource`) becomes `--key=value` and goes
//! through clap, so the file is checked by exactly the parsers the flags
//! use. A flag given on the command line overrides the key (a repeatable
//! one replaces the whole list). Unknown keys and values of the wrong type
//! are refused, naming the file, the line and the key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::ArgAction;
use clap::parser::ValueSource;
use toml::Spanned;

/// A configuration file that cannot be used (`sandbox serve` then exits 125).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error(
        "config file {path}, line {line}: unknown key `{key}` (the keys are serve's long flags{hint})"
    )]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        hint: String,
    },
    #[error("config file {path}, line {line}: `{key}` must be {expected}, not {found}")]
    WrongType {
        path: PathBuf,
        line: usize,
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("config file {path}, line {line}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// Keys a file cannot set: clap's own flags and `--config` itself.
const NOT_KEYS: [&str; 3] = ["help", "version", "config"];

/// The arguments `path` adds to a `serve` command line whose matches are
/// `given`: `--key=value` for each key of the file that the command line
/// did not set. `serve` is the `serve` subcommand as clap declares it
/// (with the global flags propagated, i.e. built).
pub fn args_from_file(
    path: &Path,
    serve: &clap::Command,
    given: &clap::ArgMatches,
) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    args_from_str(&text, path, serve, given)
}

fn args_from_str(
    text: &str,
    path: &Path,
    serve: &clap::Command,
    given: &clap::ArgMatches,
) -> Result<Vec<OsString>, ConfigError> {
    let table: Vec<(Spanned<String>, Spanned<toml::Value>)> =
        toml::from_str::<std::collections::BTreeMap<Spanned<String>, Spanned<toml::Value>>>(text)
            .map_err(|e| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string().trim_end().replace('\n', " "),
            })?
            .into_iter()
            .collect();
    let line = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
    let mut out = Vec::new();
    for (key, value) in table {
        let at = line(key.span().start);
        let name = key.get_ref().as_str();
        let arg = serve
            .get_arguments()
            .filter(|a| a.get_long().is_some_and(|l| !NOT_KEYS.contains(&l)))
            .find(|a| a.get_long() == Some(name));
        let Some(arg) = arg else {
            let best = serve
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| !NOT_KEYS.contains(l))
                .map(|l| (strsim::jaro_winkler(l, name), l))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                line: at,
                key: name.to_string(),
                hint: best.map_or(String::new(), |(_, l)| format!("; did you mean `{l}`?")),
            });
        };
        if given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let flag = format!("--{name}");
        let wrong = |expected, found| ConfigError::WrongType {
            path: path.to_path_buf(),
            line: at,
            key: name.to_string(),
            expected,
            found,
        };
        let mut these = Vec::new();
        match (arg.get_action(), value.get_ref()) {
            (ArgAction::SetTrue, toml::Value::Boolean(b)) => {
                if *b {
                    these.push(flag.clone());
                }
            }
            (ArgAction::SetFalse, toml::Value::Boolean(b)) => {
                if !*b {
                    these.push(flag.clone());
                }
            }
            (ArgAction::SetTrue | ArgAction::SetFalse, v) => {
                return Err(wrong("true or false", type_name(v)));
            }
            (ArgAction::Append, toml::Value::Array(items)) => {
                for v in items {
                    these.push(format!(
                        "{flag}={}",
                        scalar(v).ok_or_else(|| wrong(
                            "an array of strings or numbers",
                            "an array holding other values"
                        ))?
                    ));
                }
            }
            (action, v) if action.takes_values() => {
                let expected = if matches!(action, ArgAction::Append) {
                    "a string, a number or an array of them"
                } else {
                    "a string or a number"
                };
                these.push(format!(
                    "{flag}={}",
                    scalar(v).ok_or_else(|| wrong(expected, type_name(v)))?
                ));
            }
            (_, v) => return Err(wrong("a value this flag takes", type_name(v))),
        }
        // The same parsers as on the command line, one key at a time so that
        // an error names it.
        let mut probe = serve.clone().no_binary_name(true);
        if let Err(e) = probe.try_get_matches_from_mut(&these) {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line: at,
                key: name.to_string(),
                message: first.strip_prefix("error: ").unwrap_or(first).to_string(),
            });
        }
        out.extend(these.into_iter().map(OsString::from));
    }
    Ok(out)
}

/// A TOML string or number as the flag's text, else `None`.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn serve_cmd() -> clap::Command {
        let mut cli = super::super::Cli::command();
        cli.build();
        cli.find_subcommand("serve").expect("serve").clone()
    }

    fn from(text: &str, argv: &[&str]) -> Result<Vec<String>, ConfigError> {
        let mut serve = serve_cmd();
        let given = serve
            .try_get_matches_from_mut(std::iter::once("serve").chain(argv.iter().copied()))
            .expect("argv");
        args_from_str(text, Path::new("/etc/s.toml"), &serve, &given).map(|v| {
            v.into_iter()
                .map(|s| s.into_string().expect("utf-8"))
                .collect()
        })
    }

    #[test]
    fn keys_become_flags_unless_given() {
        let a = from(
            "listen = \"127.0.0.1:9\"\nworkers = 3\nallow-image = [\"python\", \"gcc\"]\nwork-dir = \"/w\"\n",
            &["--workers", "2"],
        )
        .expect("ok");
        assert_eq!(
            a,
            [
                "--allow-image=python",
                "--allow-image=gcc",
                "--listen=127.0.0.1:9",
                "--work-dir=/w"
            ]
        );
        assert_eq!(
            from("allow-image = \"python\"\n", &[]).expect("ok"),
            ["--allow-image=python"]
        );
        assert!(
            from("allow-image = [\"x\"]\n", &["--allow-image", "y"])
                .expect("ok")
                .is_empty()
        );
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let e = from("\n\nlisten = \"x:1:2\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/s.toml, line 3: `listen`"), "{e}");
        let e = from("worker = 2\n", &[]).unwrap_err().to_string();
        assert!(e.contains("unknown key `worker`"), "{e}");
        assert!(e.contains("did you mean `workers`"), "{e}");
        let e = from("workers = [1]\n", &[]).unwrap_err().to_string();
        assert!(
            e.contains("`workers` must be a string or a number, not an array"),
            "{e}"
        );
        let e = from("workers = \"many\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("line 1: `workers`: invalid value 'many'"), "{e}");
        let e = from("[listen]\n", &[]).unwrap_err().to_string();
        assert!(e.contains("not a table"), "{e}");
        for k in NOT_KEYS {
            let e = from(&format!("{k} = \"x\"\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("unknown key"), "{e}");
        }
        let e = from("listen = \n", &[]).unwrap_err().to_string();
        assert!(e.contains("not valid TOML"), "{e}");
    }
}
