//! A workflow's graph source, checked in one place: the relations the workflow names must
//! exist in the graph it will run on. That is the database's graph when it has one; for an
//! empty database it is the file the workflow imports, which is read and parsed here once and
//! handed on, so the engine imports exactly what was checked.

use super::spec::GraphSpec;
use super::{Issue, Loaded, WorkflowError};
use crate::fetch::{self, FetchError, FetchOptions, Fetched};
use crate::graph::features::read_features;
use crate::graph::table::{
    ColumnMap, Format, MapError, TableOptions, TableSource, implied_by_name, parse_delimiter,
    read_table,
};
use crate::graph::{OnInvalid, ParseError, TripleBatch, kgx, tsv};
use crate::store::{Store, StoreError};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("graph.fetch: {0}")]
    Fetch(#[from] FetchError),
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
        /// The verified download the batch was read from (`graph.fetch`).
        fetched: Option<Box<Fetched>>,
    },
    /// The database is empty and the workflow names no graph file.
    Missing,
}

/// Checks the relations `l` names against the graph it would run on with `store` (`None`:
/// no database yet), and returns that graph's source.
pub async fn check(store: Option<&Store>, l: &Loaded) -> Result<Source, SourceError> {
    check_with(store, l, true).await
}

/// As [`check`]; without `network`, a `graph.fetch` dataset the cache lacks is not fetched
/// and the source is `Missing` (its relations are checked when it is fetched).
pub async fn check_with(
    store: Option<&Store>,
    l: &Loaded,
    network: bool,
) -> Result<Source, SourceError> {
    if let Some(store) = store
        && store.head().await?.is_some()
    {
        let relations: HashSet<String> = store.relation_keys().await?.into_iter().collect();
        check_relations(l, &|r| relations.contains(r))?;
        return Ok(Source::Stored);
    }
    if let Some(name) = &l.workflow.graph.fetch {
        let fetched = match fetch_cached(name, network).await {
            Err(FetchError::NotCached { .. }) if !network => return Ok(Source::Missing),
            other => other?,
        };
        let batch = read_fetched(l, &fetched)?;
        let relations: HashSet<&str> = batch.relations.iter().map(String::as_str).collect();
        check_relations(l, &|r| relations.contains(r))?;
        return Ok(Source::File {
            batch: Box::new(batch),
            path: fetched.dir.clone(),
            fetched: Some(Box::new(fetched)),
        });
    }
    let Some((batch, path)) = read(l)? else {
        return Ok(Source::Missing);
    };
    let relations: HashSet<&str> = batch.relations.iter().map(String::as_str).collect();
    check_relations(l, &|r| relations.contains(r))?;
    Ok(Source::File {
        batch: Box::new(batch),
        path,
        fetched: None,
    })
}

/// What `validate` checks of the relations `l` names, with nothing downloaded: against the
/// graph the workflow names (its file, or its `graph.fetch` dataset when the cache holds it),
/// else against the database's graph. Returns notes that do not fail validation: a
/// `graph.fetch` dataset not downloaded yet (its relations are checked at the first run,
/// before any training), and relations a database that already holds another graph lacks
/// (a run on that database stops before training: the workflow's graph is imported only
/// into an empty one).
pub async fn check_offline(store: Option<&Store>, l: &Loaded) -> Result<Vec<String>, SourceError> {
    let mut notes = Vec::new();
    let g = &l.workflow.graph;
    let names_source = g.fetch.is_some() || g.import.is_some() || g.kgx.is_some();
    let stored = match store {
        Some(s) if s.head().await?.is_some() => Some(
            s.relation_keys()
                .await?
                .into_iter()
                .collect::<HashSet<String>>(),
        ),
        _ => None,
    };
    if !names_source {
        if let Some(relations) = &stored {
            check_relations_in(l, "the database's graph", &|r| relations.contains(r))?;
        }
        return Ok(notes);
    }
    match &g.fetch {
        Some(name) => match fetch_cached(name, false).await {
            Err(FetchError::NotCached { .. }) => {
                if !l.workflow.generate.relations.is_empty() {
                    notes.push(format!(
                        "graph.fetch `{name}` is not downloaded yet (`hypograph fetch {name} \
                         --no-import` fetches it ahead): the relations of generate.relations are \
                         checked at the first run, before any training"
                    ));
                }
            }
            Err(e) => return Err(e.into()),
            Ok(fetched) => {
                let batch = read_fetched(l, &fetched)?;
                let relations: HashSet<&str> = batch.relations.iter().map(String::as_str).collect();
                check_relations_in(l, &format!("the `{name}` graph"), &|r| {
                    relations.contains(r)
                })?;
            }
        },
        None => {
            if let Some((batch, _)) = read(l)? {
                let relations: HashSet<&str> = batch.relations.iter().map(String::as_str).collect();
                check_relations(l, &|r| relations.contains(r))?;
            }
        }
    }
    if let Some(relations) = &stored {
        let lacking: Vec<&str> = l
            .workflow
            .generate
            .relations
            .iter()
            .filter(|r| !relations.contains(r.as_str()))
            .map(String::as_str)
            .collect();
        if !lacking.is_empty() {
            notes.push(format!(
                "the database already holds a graph, without {}: a run on this database stops \
                 before training (the workflow's graph is imported only into an empty database; \
                 `--db` names another)",
                lacking
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(notes)
}

/// The named dataset from the cache, verified (downloaded first when it is not there).
async fn fetch_cached(name: &str, network: bool) -> Result<Fetched, FetchError> {
    let datasets = fetch::catalog_in_force()?;
    let dataset = fetch::catalog::find(&datasets, name)?;
    let mut opts = FetchOptions::new(fetch::default_cache_dir()?);
    opts.offline = !network;
    fetch::fetch(dataset, &opts, &fetch::Quiet).await
}

/// A fetched dataset read with its format's reader, with the workflow's features attached.
fn read_fetched(l: &Loaded, fetched: &Fetched) -> Result<TripleBatch, ParseError> {
    let mut batch = fetched.read()?;
    if let Some(f) = &l.workflow.graph.features {
        read_features(&l.resolve(f))?.attach(&mut batch, &fetched.dir)?;
    }
    Ok(batch)
}

/// The workflow's graph file (`graph.import`) or KGX directory (`graph.kgx`), parsed, with
/// its features (`graph.features`), whose entities must all be in it.
fn read(l: &Loaded) -> Result<Option<(TripleBatch, PathBuf)>, ParseError> {
    let g = &l.workflow.graph;
    let (mut batch, path) = match (&g.import, &g.kgx) {
        (Some(p), _) => {
            let p = l.resolve(p);
            let nodes = g.nodes.as_deref().map(|n| l.resolve(n));
            let batch = match table_source(g, &p, nodes) {
                Err(e) => {
                    return Err(ParseError::File {
                        path: l.file.clone(),
                        message: format!("graph.map: {e}"),
                    });
                }
                Ok(Some(TableInput::Table(src))) => read_table(&src, OnInvalid::Fail)?,
                Ok(Some(TableInput::Kgx { nodes, edges })) => {
                    kgx::read_kgx(&nodes, &edges, OnInvalid::Fail)?
                }
                Ok(None) => tsv::read_triples(&p, OnInvalid::Fail)?,
            };
            (batch, p)
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

/// How `graph.import` is read when it is not plain triples.
pub(crate) enum TableInput {
    Table(Box<TableSource>),
    Kgx { nodes: PathBuf, edges: PathBuf },
}

/// The reader `graph:` asks for (`None`: plain triples); a bad `map` or `delimiter` is an
/// error naming the key (validation reports it located first).
pub(crate) fn table_source(
    g: &GraphSpec,
    import: &Path,
    nodes: Option<PathBuf>,
) -> Result<Option<TableInput>, MapError> {
    let mut map = ColumnMap::default();
    for (k, v) in &g.map {
        map.set(k, v)?;
    }
    let delimiter = g
        .delimiter
        .as_deref()
        .map(parse_delimiter)
        .transpose()
        .map_err(|message| MapError {
            key: "delimiter".into(),
            message,
        })?;
    let options = (delimiter.is_some() || g.header.is_some()).then(|| TableOptions {
        delimiter,
        header: g.header.unwrap_or(true),
    });
    let preset = match g.format {
        Some(Format::Triples) => return Ok(None),
        Some(Format::Kgx) if g.map.is_empty() && options.is_none() => {
            let (edges, dir) = if import.is_dir() {
                (import.join("edges.tsv"), import.to_owned())
            } else {
                (
                    import.to_owned(),
                    import.parent().unwrap_or(Path::new(".")).to_owned(),
                )
            };
            let nodes = nodes.unwrap_or_else(|| dir.join("nodes.tsv"));
            return Ok(Some(TableInput::Kgx { nodes, edges }));
        }
        Some(Format::Kgx | Format::Table) => None,
        Some(f) => f.preset(),
        None if g.map.is_empty()
            && options.is_none()
            && g.nodes.is_none()
            && !implied_by_name(import) =>
        {
            return Ok(None);
        }
        None => None,
    };
    Ok(Some(TableInput::Table(Box::new(TableSource {
        edges: import.to_owned(),
        nodes,
        preset,
        map,
        options,
    }))))
}

/// Every relation in `generate.relations` that `known` does not know, as located issues.
fn check_relations(l: &Loaded, known: &dyn Fn(&str) -> bool) -> Result<(), WorkflowError> {
    check_relations_in(l, "the graph", known)
}

/// As [`check_relations`], naming the graph (`graph`) in the messages.
fn check_relations_in(
    l: &Loaded,
    graph: &str,
    known: &dyn Fn(&str) -> bool,
) -> Result<(), WorkflowError> {
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
                message: format!("relation `{r}` is not in {graph}"),
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
            Ok(Source::File { batch, path, .. }) => {
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
