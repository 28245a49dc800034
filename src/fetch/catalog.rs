//! The public graphs `hypograph fetch` knows: one table of publisher URLs, sizes, SHA-256 sums,
//! licences and citations. A catalog file of the same shape (`--catalog FILE`,
//! `HYPOGRAPH_FETCH_CATALOG`) replaces it, for institutional mirrors with their own files and
//! for tests, which cannot serve bytes matching a published sum.

use super::FetchError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One dataset: what it is, where it comes from, and the files it consists of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// The name `hypograph fetch NAME` takes; also the directory under a `--mirror` URL.
    pub name: String,
    pub version: String,
    pub homepage: String,
    pub licence: String,
    pub citation: String,
    /// The import format that reads these files (`hetionet`, `primekg`, `drkg`, `monarch`).
    pub format: String,
    /// Why this source and version were chosen, where that is not obvious.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    pub files: Vec<FileSpec>,
}

/// One file of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// The local file name, and the name under `--mirror URL/<dataset>/` and in `--from DIR`.
    pub name: String,
    /// The publisher's URL.
    pub url: String,
    /// Bytes, where the publisher states them.
    #[serde(default)]
    pub size: Option<u64>,
    /// Lowercase hex SHA-256, where known.
    #[serde(default)]
    pub sha256: Option<String>,
    pub sum: SumSource,
}

/// Where a file's expected checksum comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SumSource {
    /// The publisher states it; it is in this table and nothing overrides it.
    Published,
    /// Nobody publishes one: the first download's sum is recorded in the cache's pins file and
    /// every later download must match it (or be accepted with `--repin`).
    PinnedOnFirstUse,
}

impl SumSource {
    pub fn label(self) -> &'static str {
        match self {
            SumSource::Published => "published",
            SumSource::PinnedOnFirstUse => "pinned on first use",
        }
    }
}

/// The built-in table. Every URL, size and sum here was checked against the publisher's own
/// records where they could be reached; see each `note`.
pub fn builtin() -> Vec<Dataset> {
    fn s(v: &str) -> String {
        v.to_owned()
    }
    vec![
        Dataset {
            name: s("hetionet"),
            version: s("v1.0"),
            homepage: s("https://het.io"),
            licence: s("CC0 1.0"),
            citation: s(
                "Himmelstein DS et al. Systematic integration of biomedical knowledge prioritizes \
                 drugs for repurposing. eLife 2017;6:e26726. doi:10.7554/eLife.26726",
            ),
            format: s("hetionet"),
            note: s(
                "GitHub repository hetio/hetionet. The edges file is stored with Git LFS, so it \
                 comes from GitHub's LFS media URL; its size and sum are the LFS pointer's. The \
                 nodes file is a plain file in the same repository.",
            ),
            files: vec![
                FileSpec {
                    name: s("hetionet-v1.0-edges.sif.gz"),
                    url: s(
                        "https://media.githubusercontent.com/media/hetio/hetionet/main/hetnet/tsv/hetionet-v1.0-edges.sif.gz",
                    ),
                    size: Some(12_401_407),
                    sha256: Some(s(
                        "611f0411ac666be4e0270e54bbca67407e14720bfc3099311f0f5eec25c5a947",
                    )),
                    sum: SumSource::Published,
                },
                FileSpec {
                    name: s("hetionet-v1.0-nodes.tsv"),
                    url: s(
                        "https://raw.githubusercontent.com/hetio/hetionet/main/hetnet/tsv/hetionet-v1.0-nodes.tsv",
                    ),
                    size: None,
                    sha256: None,
                    sum: SumSource::PinnedOnFirstUse,
                },
            ],
        },
        Dataset {
            name: s("primekg"),
            version: s("dataverse-file-6180620"),
            homepage: s("https://zitniklab.hms.harvard.edu/projects/PrimeKG/"),
            licence: s("CC BY 4.0"),
            citation: s(
                "Chandak P, Huang K, Zitnik M. Building a knowledge graph to enable precision \
                 medicine. Scientific Data 2023;10:67. doi:10.1038/s41597-023-01960-3; data: \
                 Harvard Dataverse doi:10.7910/DVN/IXA7BM",
            ),
            format: s("primekg"),
            note: s(
                "kg.csv of Harvard Dataverse dataset doi:10.7910/DVN/IXA7BM, by its datafile \
                 id (a file id names one upload, so the content does not move under it).",
            ),
            files: vec![FileSpec {
                name: s("kg.csv"),
                url: s("https://dataverse.harvard.edu/api/access/datafile/6180620"),
                size: None,
                sha256: None,
                sum: SumSource::PinnedOnFirstUse,
            }],
        },
        Dataset {
            name: s("drkg"),
            version: s("2020"),
            homepage: s("https://github.com/gnn4dr/DRKG"),
            licence: s("Apache-2.0 (sources keep their own terms)"),
            citation: s(
                "Ioannidis VN et al. DRKG - Drug Repurposing Knowledge Graph for Covid-19. \
                 https://github.com/gnn4dr/DRKG, 2020",
            ),
            format: s("drkg"),
            note: s(
                "The tarball the DRKG README links (drkg.tsv, entity2src.tsv, \
                 relation_glossary.tsv, embed/); the import reads drkg.tsv from it.",
            ),
            files: vec![FileSpec {
                name: s("drkg.tar.gz"),
                url: s("https://dgl-data.s3-us-west-2.amazonaws.com/dataset/DRKG/drkg.tar.gz"),
                size: None,
                sha256: None,
                sum: SumSource::PinnedOnFirstUse,
            }],
        },
        Dataset {
            name: s("monarch"),
            version: s("2026-04-14"),
            homepage: s("https://monarchinitiative.org"),
            licence: s("CC0 1.0 (sources keep their own terms)"),
            citation: s(
                "Putman TE et al. The Monarch Initiative in 2024: an analytic platform \
                 integrating phenotypes, genes and diseases across species. Nucleic Acids \
                 Research 2024;52(D1):D938-D949. doi:10.1093/nar/gkad1082",
            ),
            format: s("monarch"),
            note: s(
                "The KGX TSV tarball of the dated release 2026-04-14, not monarch-kg/latest: \
                 'latest' moves monthly and would break the pinned sum. Every release directory \
                 under data.monarchinitiative.org/monarch-kg/ holds monarch-kg.tar.gz; \
                 2026-04-14 was the newest release found pinned by public code.",
            ),
            files: vec![FileSpec {
                name: s("monarch-kg.tar.gz"),
                url: s(
                    "https://data.monarchinitiative.org/monarch-kg/2026-04-14/monarch-kg.tar.gz",
                ),
                size: None,
                sha256: None,
                sum: SumSource::PinnedOnFirstUse,
            }],
        },
    ]
}

/// Reads a catalog file (YAML or JSON: a list of datasets in the shape of [`Dataset`]).
pub fn load(path: &Path) -> Result<Vec<Dataset>, FetchError> {
    let text = std::fs::read_to_string(path).map_err(|e| FetchError::Io {
        path: path.to_owned(),
        source: e,
    })?;
    let bad = |message: String| FetchError::Catalog {
        path: path.to_owned(),
        message,
    };
    let datasets: Vec<Dataset> = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    check(&datasets).map_err(bad)?;
    Ok(datasets)
}

/// The rules every catalog keeps: unique names, file names that stay inside their directory,
/// well-formed sums, and a sum wherever one is claimed to be published.
pub fn check(datasets: &[Dataset]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for d in datasets {
        if !names.insert(d.name.as_str()) {
            return Err(format!("dataset {:?} is listed twice", d.name));
        }
        for (what, v) in [("name", &d.name), ("version", &d.version)] {
            if !plain_name(v) {
                return Err(format!(
                    "dataset {:?}: {what} {v:?} must be a plain name (letters, digits, . _ -)",
                    d.name
                ));
            }
        }
        if d.files.is_empty() {
            return Err(format!("dataset {:?} has no files", d.name));
        }
        let mut files = std::collections::BTreeSet::new();
        for f in &d.files {
            let at = || format!("dataset {:?}, file {:?}", d.name, f.name);
            if !plain_name(&f.name) {
                return Err(format!(
                    "{}: a file name is a plain name (letters, digits, . _ -)",
                    at()
                ));
            }
            if !files.insert(f.name.as_str()) {
                return Err(format!("{}: listed twice", at()));
            }
            if let Some(sum) = &f.sha256
                && !is_sha256(sum)
            {
                return Err(format!(
                    "{}: sha256 {sum:?} is not 64 lowercase hex digits",
                    at()
                ));
            }
            if f.sum == SumSource::Published && f.sha256.is_none() {
                return Err(format!("{}: a published sum needs its sha256", at()));
            }
            if !(f.url.starts_with("https://") || f.url.starts_with("http://")) {
                return Err(format!("{}: url {:?} is not http(s)", at(), f.url));
            }
        }
    }
    Ok(())
}

/// The dataset called `name`, or an error that lists the known ones.
pub fn find<'a>(datasets: &'a [Dataset], name: &str) -> Result<&'a Dataset, FetchError> {
    datasets
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| FetchError::UnknownDataset {
            name: name.to_owned(),
            known: datasets
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_table_keeps_the_rules() {
        let all = builtin();
        check(&all).expect("builtin catalog");
        let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["hetionet", "primekg", "drkg", "monarch"]);
        for d in &all {
            assert_eq!(d.format, d.name, "import format of {}", d.name);
            for f in &d.files {
                assert!(f.url.starts_with("https://"), "{}", f.url);
                if f.sum == SumSource::PinnedOnFirstUse {
                    assert!(
                        f.sha256.is_none(),
                        "{}: pinned, so no sum in the table",
                        f.name
                    );
                }
            }
        }
        assert!(
            !all.iter()
                .any(|d| d.files.iter().any(|f| f.url.contains("/latest/"))),
            "a moving 'latest' URL would break pinned sums"
        );
    }

    #[test]
    fn catalog_problems_are_named() {
        let mut d = builtin().remove(0);
        let check_one = |d: &Dataset| check(std::slice::from_ref(d)).expect_err("an error");
        d.files[0].sha256 = Some("ABC".into());
        assert!(check_one(&d).contains("64 lowercase hex"));
        d.files[0].sha256 = None;
        assert!(check_one(&d).contains("published sum needs its sha256"));
        let mut d = builtin().remove(1);
        d.files[0].name = "../kg.csv".into();
        assert!(check_one(&d).contains("plain name"));
        let mut d = builtin().remove(1);
        d.version = "a/b".into();
        assert!(check_one(&d).contains("version"));
        let d = builtin().remove(1);
        assert!(
            check(&[d.clone(), d])
                .expect_err("an error")
                .contains("twice")
        );
    }

    #[test]
    fn a_catalog_file_reads_as_yaml_or_json() {
        let dir = tempfile::tempdir().expect("tmp");
        let yaml = dir.path().join("c.yaml");
        std::fs::write(
            &yaml,
            "- name: t\n  version: '1'\n  homepage: h\n  licence: l\n  citation: c\n  format: drkg\n  files:\n    - name: a.tsv\n      url: http://x/a.tsv\n      sum: pinned_on_first_use\n",
        )
        .expect("write");
        let got = load(&yaml).expect("yaml catalog");
        assert_eq!(got[0].files[0].sum, SumSource::PinnedOnFirstUse);
        let json = dir.path().join("c.json");
        std::fs::write(&json, serde_json::to_string(&got).expect("json")).expect("write");
        assert_eq!(load(&json).expect("json catalog"), got);
        std::fs::write(&json, "- name: t\n  bogus: 1\n").expect("write");
        let err = load(&json).expect_err("an error").to_string();
        assert!(err.contains("c.json") && err.contains("bogus"), "{err}");
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = find(&builtin(), "wikidata")
            .expect_err("an error")
            .to_string();
        assert!(err.contains("wikidata") && err.contains("hetionet, primekg, drkg, monarch"));
    }
}
