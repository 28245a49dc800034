//! A workflow's graph source, checked in one place: the relations the workflow names must
//! exist in the graph it will run on. That is the database's graph when it has one; for an
//! empty database it is the file the workflow imports, which is read and parsed here once and
//! handed on, so the engine imports exactly what was checked.

use super::{Issue, Loaded, WorkflowError};
use crate::graph::features::read_features;
use crate::graph::{OnInvalid, ParseError, TripleBatch, kgx, tsv};
use crate::store::{Store, StoreError};
use std::collections::HashSet;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a checked workflow's graph comes from.
#[derive(Debug)]
pub enum Source {
    /// The database already holds a graph; the workflow's `graph` section is not read.
    Stored,
    /// The database is empty (or there is none yet): the workflow's graph file, parsed, with
    /// the features file's values in `batch.features` (so they commit in the same version).
    File {
        batch: Box<TripleBatch>,
        path: PathBuf,
    },
    /// The database is empty and the workflow names no graph file.
    Missing,
}

/// Checks the relations `l` names against the graph it would run on with `store` (`None`:
/// no database yet), and returns that graph's source.
pub async fn check(store: Option<&Store>, l: &Loaded) -> Result<Source, SourceError> {
    if let Some(store) = store
        && store.head().await?.is_some()
    {
        let relations: HashSet<String> = store.relation_keys().await?.into_iter().collect();
        check_relations(l, &|r| relations.contains(r))?;
        return Ok(Source::Stored);
    }
    let Some((batch, path)) = read(l)? else {
        return Ok(Source::Missing);
    };
    let relations: HashSet<&str> = batch.relations.iter().map(String::as_str).collect();
    check_relations(l, &|r| relations.contains(r))?;
    Ok(Source::File {
        batch: Box::new(batch),
        path,
    })
}

/// The workflow's graph file (`graph.import`) or KGX directory (`graph.kgx`), parsed, with
/// its features (`graph.features`), whose entities must all be in it.
fn read(l: &Loaded) -> Result<Option<(TripleBatch, PathBuf)>, ParseError> {
    let g = &l.workflow.graph;
    let (mut batch, path) = match (&g.import, &g.kgx) {
        (Some(p), _) => {
            let p = l.resolve(p);
            (tsv::read_triples(&p, OnInvalid::Fail)?, p)
        }
        (None, Some(d)) => {
            let d = l.resolve(d);
            let batch = kgx::read_kgx(&d.join("nodes.tsv"), &d.join("edges.tsv"), OnInvalid::Fail)?;
            (batch, d)
        }
        (None, None) => return Ok(None),
    };
    if let (Some(columns), Some(d)) = (&g.node_features, &g.kgx) {
        kgx::node_features(&l.resolve(d).join("nodes.tsv"), columns)?.attach(&mut batch, &path)?;
    }
    if let Some(f) = &g.features {
        read_features(&l.resolve(f))?.attach(&mut batch, &path)?;
    }
    Ok(Some((batch, path)))
}

/// Every relation in `generate.relations` that `known` does not know, as located issues.
fn check_relations(l: &Loaded, known: &dyn Fn(&str) -> bool) -> Result<(), WorkflowError> {
    let positions = super::Positions::of(&l.text);
    let issues: Vec<Issue> = l
        .workflow
        .generate
        .relations
        .iter()
        .enumerate()
        .filter(|(_, r)| !known(r))
        .map(|(i, r)| {
            let path = format!("generate.relations[{i}]");
            Issue {
                pos: positions.find(&path),
                path,
                message: format!("relation `{r}` is not in the graph"),
            }
        })
        .collect();
    if issues.is_empty() {
        Ok(())
    } else {
        Err(WorkflowError {
            file: l.file.clone(),
            issues,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(dir: &std::path::Path, yaml: &str) -> Loaded {
        let file = dir.join("w.yaml");
        std::fs::write(&file, yaml).expect("write workflow");
        super::super::load(&file).expect("valid workflow")
    }

    #[tokio::test]
    async fn relations_are_checked_against_the_file_an_empty_database_would_import() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("g.tsv"), "a\ttreats\tb\n").expect("write graph");
        let stage = "stages:\n  - name: s\n    plugin: human\n";
        let good = loaded(
            dir.path(),
            &format!("name: w\ngraph:\n  import: g.tsv\ngenerate:\n  relations: [treats]\n{stage}"),
        );
        match check(None, &good).await {
            Ok(Source::File { batch, path }) => {
                assert_eq!(batch.relations, vec!["treats".to_owned()]);
                assert_eq!(path, dir.path().join("g.tsv"));
            }
            other => panic!("expected the parsed file, got {other:?}"),
        }
        let bad = loaded(
            dir.path(),
            &format!(
                "name: w\ngraph:\n  import: g.tsv\ngenerate:\n  relations: [treats, cures]\n{stage}"
            ),
        );
        let e = check(None, &bad).await.expect_err("unknown relation");
        assert_eq!(
            e.to_string(),
            format!(
                "{}:5:23: generate.relations[1]: relation `cures` is not in the graph",
                dir.path().join("w.yaml").display()
            )
        );
        let none = loaded(dir.path(), &format!("name: w\n{stage}"));
        assert!(matches!(check(None, &none).await, Ok(Source::Missing)));
    }

    #[tokio::test]
    async fn features_ride_with_the_graph_file_and_name_entities_it_lacks() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("g.tsv"), "a\ttreats\tb\n").expect("write graph");
        std::fs::write(dir.path().join("f.tsv"), "id\tsmiles\nb\tCCO\n").expect("write");
        std::fs::write(dir.path().join("bad.tsv"), "id\tf0\na\t1\nzz\t2\n").expect("write");
        let stage = "stages:\n  - name: s\n    plugin: human\n";
        let with = |features: &str| {
            format!("name: w\ngraph:\n  import: g.tsv\n  features: {features}\n{stage}")
        };
        match check(None, &loaded(dir.path(), &with("f.tsv"))).await {
            Ok(Source::File { batch, .. }) => assert_eq!(
                batch.features,
                vec![(1, crate::graph::FeatureValue::Smiles("CCO".into()))]
            ),
            other => panic!("expected the parsed file, got {other:?}"),
        }
        let e = check(None, &loaded(dir.path(), &with("bad.tsv")))
            .await
            .expect_err("unknown entity");
        assert_eq!(
            e.to_string(),
            format!(
                "{}:3: entity `zz` is not in {} (features never create entities)",
                dir.path().join("bad.tsv").display(),
                dir.path().join("g.tsv").display()
            )
        );
    }
}
