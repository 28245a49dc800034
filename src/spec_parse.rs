//! YAML documents as hypograph reads them (workflow files, plugin manifests): `${VAR}`
//! interpolation from the environment, deserialization that reports every problem at once,
//! each as `FILE:LINE:COL: field.path: message`, the value parsers both kinds of file share
//! (durations), and their JSON Schemas. Below `workflow` and `plugin::manifest`: a manifest
//! needs none of the workflow code to be read.

pub mod duration;
mod positions;
pub mod schema;

pub use positions::{Pos, Positions};

use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// One problem in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub pos: Option<Pos>,
    /// Dotted field path (`stages[0].plugin`); empty for the whole document.
    pub path: String,
    pub message: String,
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DocError {
    pub file: PathBuf,
    pub issues: Vec<Issue>,
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let (line, col) = issue.pos.map_or((1, 1), |p| (p.line, p.col));
            let path = if issue.path.is_empty() {
                "(document)"
            } else {
                &issue.path
            };
            write!(
                f,
                "{}:{line}:{col}: {path}: {}",
                self.file.display(),
                issue.message
            )?;
        }
        Ok(())
    }
}

impl DocError {
    /// One problem with the whole file.
    pub fn whole(file: &Path, message: String) -> Self {
        Self {
            file: file.to_owned(),
            issues: vec![Issue {
                pos: None,
                path: String::new(),
                message,
            }],
        }
    }
}

/// Reads a document's text; a file that cannot be read is one problem of the whole file.
pub fn read(file: &Path) -> Result<String, DocError> {
    std::fs::read_to_string(file)
        .map_err(|e| DocError::whole(file, format!("cannot read the file: {e}")))
}

/// Parses one YAML document into `T` with `${VAR}` interpolation, reporting every problem
/// with its position. Shared by workflow files and plugin manifests.
pub fn parse_doc<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(T, Positions), DocError> {
    let (doc, issues, positions) = parse_partial::<T>(text, env);
    match doc {
        Some(d) if issues.is_empty() => Ok((d, positions)),
        _ => Err(DocError {
            file: file.to_owned(),
            issues,
        }),
    }
}

/// As far as a document parses: the value (with offending fields taken out) if any, and
/// every problem found, sorted by position.
pub fn parse_partial<T: serde::de::DeserializeOwned>(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Option<T>, Vec<Issue>, Positions) {
    let mut value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let issue = Issue {
                pos: e.location().map(|l| Pos {
                    line: l.line(),
                    col: l.column(),
                }),
                path: String::new(),
                message: format!("not valid YAML: {}", strip_location(&e.to_string())),
            };
            return (None, vec![issue], Positions::default());
        }
    };
    let positions = Positions::of(text);
    let mut issues = Vec::new();
    interpolate(&mut value, "", env, &mut issues);
    for issue in &mut issues {
        issue.pos = positions.find(&issue.path);
    }
    let doc = deserialize::<T>(value, &positions, &mut issues);
    issues.sort_by_key(|i| i.pos.map(|p| (p.line, p.col)));
    (doc, issues, positions)
}

/// serde_yaml appends " at line L column C"; the position is printed separately.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Replaces `${VAR}` (or `${VAR:-default}`) in every string. A value that is exactly one
/// reference takes the variable's YAML type (so `dim: ${DIM:-64}` can be a number).
fn interpolate(
    v: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<Issue>,
) {
    match v {
        Value::String(s) if s.contains("${") => {
            let whole = s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    issues.push(Issue {
                        pos: None,
                        path: path.to_owned(),
                        message: "unclosed `${` (write `${NAME}`)".into(),
                    });
                    return;
                };
                // `${NAME:-default}`: the default when NAME is unset or empty, as in a shell.
                let (name, default) = match after[..end].split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (&after[..end], None),
                };
                let valid =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    issues.push(Issue {
                        pos: None,
                        path: path.to_owned(),
                        message: format!("`${{{name}}}` is not a variable name"),
                    });
                    return;
                }
                match env(name).filter(|v| !v.is_empty() || default.is_none()) {
                    Some(val) => out.push_str(&val),
                    None if default.is_some() => out.push_str(default.unwrap_or_default()),
                    None => {
                        issues.push(Issue {
                            pos: None,
                            path: path.to_owned(),
                            message: format!("environment variable `{name}` is not set"),
                        });
                        return;
                    }
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *v = match serde_yaml::from_str::<Value>(&out) {
                Ok(typed @ (Value::Number(_) | Value::Bool(_))) if whole => typed,
                _ => Value::String(out),
            };
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), env, issues);
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                let p = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                interpolate(item, &p, env, issues);
            }
        }
        _ => {}
    }
}

/// Deserializes, collecting every structural error: after each one the offending field is
/// taken out and the rest is tried again, so one run reports all of them.
fn deserialize<T: serde::de::DeserializeOwned>(
    mut value: Value,
    positions: &Positions,
    issues: &mut Vec<Issue>,
) -> Option<T> {
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..50 {
        let result: Result<T, _> = serde_path_to_error::deserialize(value.clone());
        let err = match result {
            Ok(w) => return Some(w),
            Err(e) => e,
        };
        let mut path = err.path().to_string();
        if path == "." {
            path.clear();
        }
        let message = strip_location(&err.inner().to_string());
        // Make sure an unknown field's path names the field itself.
        let target = match message
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            Some(field) if path == field || path.ends_with(&format!(".{field}")) => path.clone(),
            Some(field) if path.is_empty() => field.to_owned(),
            Some(field) => format!("{path}.{field}"),
            None => path.clone(),
        };
        // A required field we took out ourselves: its error is already reported, so take
        // out the whole parent instead.
        let consequence = message
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
            .is_some_and(|f| {
                let full = if path.is_empty() {
                    f.to_owned()
                } else {
                    format!("{path}.{f}")
                };
                removed.contains(&full)
            });
        if !consequence {
            issues.push(Issue {
                pos: positions.find(&target),
                path: target.clone(),
                message,
            });
        }
        if target.is_empty() || !remove(&mut value, &target) {
            break;
        }
        removed.push(target);
    }
    None
}

/// Removes the node at a dotted path; false when there is none.
fn remove(v: &mut Value, path: &str) -> bool {
    let (parent, last) = match path.rfind(['.', '[']) {
        Some(i) => (&path[..i], &path[i..]),
        None => ("", path),
    };
    let Some(node) = lookup(v, parent) else {
        return false;
    };
    if let Some(index) = last.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let (Value::Sequence(items), Ok(i)) = (node, index.parse::<usize>()) else {
            return false;
        };
        if i < items.len() {
            // Replace rather than remove, so later indices keep their positions; a null
            // item then fails on its own and is removed from the parent next time.
            items.remove(i);
            return true;
        }
        return false;
    }
    let key = last.trim_start_matches('.');
    match node {
        Value::Mapping(m) => m.remove(key).is_some(),
        _ => false,
    }
}

fn lookup<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    if path.is_empty() {
        return Some(v);
    }
    let mut cur = v;
    for part in path.split('.') {
        let (key, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            cur = match cur {
                Value::Mapping(m) => m.get_mut(key)?,
                _ => return None,
            };
        }
        for idx in indices.split('[').filter(|s| !s.is_empty()) {
            let i: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = match cur {
                Value::Sequence(items) => items.get_mut(i)?,
                _ => return None,
            };
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Doc {
        dim: u32,
        url: String,
    }

    #[test]
    fn defaults_apply_when_a_variable_is_unset_or_empty() {
        let text = "dim: ${DIM:-64}\nurl: http://${HOST:-localhost}:${PORT}/v1\n";
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        let (d, issues, _) = parse_partial::<Doc>(text, &env(&[("PORT", "80")]));
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(
            d,
            Some(Doc {
                dim: 64,
                url: "http://localhost:80/v1".into()
            })
        );
        let (d, _, _) =
            parse_partial::<Doc>(text, &env(&[("PORT", "1"), ("DIM", "8"), ("HOST", "")]));
        assert_eq!(
            d.map(|d| (d.dim, d.url)),
            Some((8, "http://localhost:1/v1".into()))
        );
        let (_, issues, _) = parse_partial::<Doc>(text, &env(&[]));
        assert_eq!(issues.len(), 1);
        assert!(
            issues[0].message.contains("`PORT` is not set"),
            "{issues:?}"
        );
    }
}
