//! A prompt as a person writes it: a YAML file, the `ask` command's flags, or the API's JSON.
//! Problems are collected as `(path, message)` pairs and located at the end: a file's line and
//! column, the flag that said it, or the JSON path.

use crate::graph::FeatureValue;
use crate::spec_parse::{self, DocError, Issue, Positions};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The placeholder for what to predict.
pub const ANY: &str = "?";

/// New entities, the asker's claims about them, a context and what to predict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    /// Entities the graph does not have.
    #[serde(default)]
    pub entities: Vec<NewEntity>,
    /// `[head, relation, tail]` edges among the new entities and known ones: the asker's
    /// claims, used to place the new entities, not graph facts.
    #[serde(default)]
    pub edges: Vec<[String; 3]>,
    #[serde(default)]
    pub context: Context,
    /// `[my-mol, treats, "?"]`, `[my-mol, "?", Disease::X]`, `["?", binds, my-mol]`, or
    /// `[my-mol, "?", "?"]` for every relation within the context. Empty: every relation of
    /// every new entity within the context.
    #[serde(default)]
    pub predict: Vec<[String; 3]>,
    /// Rows in the answer.
    #[serde(default = "default_top")]
    pub top: usize,
}

fn default_top() -> usize {
    20
}

/// One entity the graph has never seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntity {
    pub id: String,
    /// One of the graph's categories (empty when the graph has none).
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub name: String,
    /// A molecule (compounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smiles: Option<String>,
    /// A protein or nucleic-acid sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    /// A feature vector computed elsewhere, as wide as the graph's vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

impl NewEntity {
    /// The entity's features, in the order a prior prefers them.
    pub fn features(&self) -> Vec<FeatureValue> {
        let mut out = Vec::new();
        if let Some(v) = &self.vector {
            out.push(FeatureValue::Vector(v.clone()));
        }
        if let Some(s) = &self.smiles {
            out.push(FeatureValue::Smiles(s.clone()));
        }
        if let Some(s) = &self.sequence {
            out.push(FeatureValue::Sequence(s.clone()));
        }
        out
    }
}

/// What the asker cares about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Known entities: in "every relation" mode, the answers' other ends where they fit.
    #[serde(default)]
    pub entities: Vec<String>,
    /// Relations to predict in "every relation" mode (default: every relation whose domain
    /// or range holds the new entity's category).
    #[serde(default)]
    pub relations: Vec<String>,
}

/// A problem at a path of the prompt (`edges[1]`, `entities[0].category`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Where a prompt came from, to say where a problem is.
#[derive(Debug)]
pub enum Origin {
    File {
        path: PathBuf,
        positions: Positions,
    },
    /// Paths to the flag that set them (`edges[0]` -> `--edge 'a r b'`).
    Flags(HashMap<String, String>),
    Json,
}

/// Problems, located for whoever wrote the prompt.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PromptError {
    #[error("{0}")]
    File(DocError),
    #[error("{}", list(.0))]
    Other(Vec<Problem>),
    /// Over a limit of [`super::limits`]: the prompt asks for more work than one ask may do.
    #[error("{0}")]
    TooLarge(Box<PromptError>),
}

fn list(p: &[Problem]) -> String {
    p.iter()
        .map(|p| {
            if p.path.is_empty() {
                p.message.clone()
            } else {
                format!("{}: {}", p.path, p.message)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl PromptError {
    /// The problems as `(where, message)` for JSON answers.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Self::File(d) => d
                .issues
                .iter()
                .map(|i| Problem::new(i.path.clone(), i.message.clone()))
                .collect(),
            Self::Other(p) => p.clone(),
            Self::TooLarge(e) => e.problems(),
        }
    }

    /// Whether the prompt was refused for its size rather than its content.
    pub fn is_too_large(&self) -> bool {
        matches!(self, Self::TooLarge(_))
    }
}

impl Origin {
    pub fn locate(&self, problems: Vec<Problem>) -> PromptError {
        match self {
            Origin::File { path, positions } => PromptError::File(DocError {
                file: path.clone(),
                issues: problems
                    .into_iter()
                    .map(|p| Issue {
                        pos: positions.find(&p.path),
                        path: p.path,
                        message: p.message,
                    })
                    .collect(),
            }),
            Origin::Flags(labels) => PromptError::Other(
                problems
                    .into_iter()
                    .map(|p| {
                        // `edges[0][1]` is the flag that gave `edges[0]`.
                        let mut key = p.path.as_str();
                        let at = loop {
                            if let Some(flag) = labels.get(key) {
                                break flag.clone();
                            }
                            match key.rfind(['.', '[']) {
                                Some(cut) => key = &key[..cut],
                                None => break p.path.clone(),
                            }
                        };
                        Problem::new(at, p.message)
                    })
                    .collect(),
            ),
            Origin::Json => PromptError::Other(problems),
        }
    }
}

/// Reads a prompt file (YAML; JSON is YAML too).
pub fn read(path: &Path) -> Result<(Prompt, Origin), PromptError> {
    let text = spec_parse::read(path).map_err(PromptError::File)?;
    let (prompt, positions) =
        spec_parse::parse_doc::<Prompt>(path, &text, &|k| std::env::var(k).ok())
            .map_err(PromptError::File)?;
    Ok((
        prompt,
        Origin::File {
            path: path.to_owned(),
            positions,
        },
    ))
}

/// The `ask` command's one-entity form.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub entity: Option<String>,
    pub category: Option<String>,
    pub name: Option<String>,
    pub smiles: Option<String>,
    pub sequence: Option<String>,
    pub vector: Option<String>,
    pub edges: Vec<String>,
    pub context: Vec<String>,
    pub relations: Vec<String>,
    pub predict: Vec<String>,
    pub top: Option<usize>,
}

/// Builds a prompt from flags; malformed flags are problems that name the flag.
pub fn from_flags(f: &Flags) -> Result<(Prompt, Origin), PromptError> {
    let mut labels = HashMap::new();
    let mut problems = Vec::new();
    let mut prompt = Prompt {
        top: f.top.unwrap_or_else(default_top),
        ..Prompt::default()
    };
    if let Some(id) = &f.entity {
        let vector = match &f.vector {
            None => None,
            Some(v) => match parse_vector(v) {
                Ok(v) => Some(v),
                Err(m) => {
                    problems.push(Problem::new(format!("--vector '{v}'"), m));
                    None
                }
            },
        };
        prompt.entities.push(NewEntity {
            id: id.clone(),
            category: f.category.clone().unwrap_or_default(),
            name: f.name.clone().unwrap_or_default(),
            smiles: f.smiles.clone(),
            sequence: f.sequence.clone(),
            vector,
        });
        labels.insert("entities[0]".into(), format!("--entity '{id}'"));
        labels.insert("entities[0].id".into(), format!("--entity '{id}'"));
        if let Some(c) = &f.category {
            labels.insert("entities[0].category".into(), format!("--category '{c}'"));
        }
        for (k, flag) in [
            ("smiles", &f.smiles),
            ("sequence", &f.sequence),
            ("vector", &f.vector),
        ] {
            if let Some(v) = flag {
                labels.insert(format!("entities[0].{k}"), format!("--{k} '{v}'"));
            }
        }
    } else if f.category.is_some() || f.smiles.is_some() || f.sequence.is_some() {
        problems.push(Problem::new(
            "--entity",
            "--category, --smiles and --sequence describe a new entity: name it with --entity",
        ));
    }
    for (i, e) in f.edges.iter().enumerate() {
        match triple_words(e) {
            Some(t) => {
                labels.insert(format!("edges[{i}]"), format!("--edge '{e}'"));
                prompt.edges.push(t);
            }
            None => problems.push(Problem::new(
                format!("--edge '{e}'"),
                "expected three words: HEAD RELATION TAIL",
            )),
        }
    }
    for (i, p) in f.predict.iter().enumerate() {
        match triple_words(p) {
            Some(t) => {
                labels.insert(format!("predict[{i}]"), format!("--predict '{p}'"));
                prompt.predict.push(t);
            }
            None => problems.push(Problem::new(
                format!("--predict '{p}'"),
                "expected three words with ? for what to predict, e.g. 'my-mol treats ?'",
            )),
        }
    }
    for (i, c) in f.context.iter().enumerate() {
        labels.insert(format!("context.entities[{i}]"), format!("--context '{c}'"));
    }
    for (i, r) in f.relations.iter().enumerate() {
        labels.insert(
            format!("context.relations[{i}]"),
            format!("--relations '{r}'"),
        );
    }
    prompt.context = Context {
        entities: f.context.clone(),
        relations: f.relations.clone(),
    };
    let origin = Origin::Flags(labels);
    if problems.is_empty() {
        Ok((prompt, origin))
    } else {
        Err(PromptError::Other(problems))
    }
}

fn triple_words(s: &str) -> Option<[String; 3]> {
    let w: Vec<&str> = s.split_whitespace().collect();
    match w.as_slice() {
        [h, r, t] => Some([h.to_string(), r.to_string(), t.to_string()]),
        _ => None,
    }
}

fn parse_vector(s: &str) -> Result<Vec<f32>, String> {
    s.split([',', ' '])
        .filter(|x| !x.is_empty())
        .enumerate()
        .map(|(i, x)| match x.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!("value {} (`{x}`) is not a finite number", i + 1)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_build_a_prompt_and_name_bad_flags() {
        let f = Flags {
            entity: Some("my-mol".into()),
            category: Some("Compound".into()),
            edges: vec!["my-mol binds Gene::1017".into(), "oops".into()],
            vector: Some("1, 2, x".into()),
            ..Flags::default()
        };
        let err = from_flags(&f).expect_err("bad flags");
        let text = err.to_string();
        assert!(
            text.contains("--edge 'oops': expected three words"),
            "{text}"
        );
        assert!(text.contains("--vector '1, 2, x': value 3"), "{text}");
        let ok = Flags {
            edges: vec!["my-mol binds Gene::1017".into()],
            ..f
        };
        let ok = Flags { vector: None, ..ok };
        let (p, origin) = from_flags(&ok).expect("prompt");
        assert_eq!(p.entities[0].category, "Compound");
        assert_eq!(p.edges[0][2], "Gene::1017");
        let located = origin.locate(vec![Problem::new("edges[0]", "unknown entity")]);
        assert_eq!(
            located.to_string(),
            "--edge 'my-mol binds Gene::1017': unknown entity"
        );
    }

    #[test]
    fn file_problems_carry_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("prompt.yaml");
        std::fs::write(
            &path,
            "entities:\n  - id: m\n    category: Compound\nedges:\n  - [m, binds, G1]\n  - [m, treats, D9]\n",
        )
        .expect("write");
        let (p, origin) = read(&path).expect("parses");
        assert_eq!(p.edges.len(), 2);
        let e = origin.locate(vec![Problem::new("edges[1]", "unknown entity `D9`")]);
        let text = e.to_string();
        assert!(text.contains("prompt.yaml:6:"), "{text}");
        assert!(text.contains("unknown entity `D9`"), "{text}");
        std::fs::write(&path, "entities:\n  - id: m\n    colour: red\n").expect("write");
        let err = read(&path).expect_err("unknown field");
        assert!(err.to_string().contains(":3:"), "{err}");
    }
}
