//! Property: for any sequence of add/remove deltas, the export at version v equals the
//! replay of the deltas up to v, and every diff of adjacent versions is that delta.

use hypograph::graph::{OnInvalid, tsv};
use hypograph::store::{ImportOptions, OpenMode, Outcome, Store};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;

type Triple = (u8, u8, u8);

fn key(t: &Triple) -> [String; 3] {
    [
        format!("e{}", t.0),
        format!("r{}", t.1),
        format!("e{}", t.2),
    ]
}

fn triple() -> impl Strategy<Value = Triple> {
    (0u8..6, 0u8..2, 0u8..6)
}

/// Each step adds some triples and removes some (possibly absent) ones.
fn steps() -> impl Strategy<Value = Vec<(Vec<Triple>, Vec<Triple>)>> {
    prop::collection::vec(
        (
            prop::collection::vec(triple(), 0..8),
            prop::collection::vec(triple(), 0..8),
        ),
        1..7,
    )
}

async fn check(steps: Vec<(Vec<Triple>, Vec<Triple>)>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("p.db"), OpenMode::Create)
        .await
        .expect("open");
    let mut state: BTreeSet<Triple> = BTreeSet::new();
    let mut states: Vec<BTreeSet<Triple>> = vec![BTreeSet::new()];
    for (add, remove) in steps {
        let before = state.clone();
        state.extend(add.iter().copied());
        for t in &remove {
            state.remove(t);
        }
        let text: String = state.iter().map(|t| key(t).join("\t") + "\n").collect();
        let batch = tsv::parse_triples(text.as_bytes(), Path::new("step.tsv"), OnInvalid::Fail)
            .expect("parse");
        let opts = ImportOptions {
            message: "step".into(),
            replace: true,
            ..ImportOptions::default()
        };
        match store.import(&batch, &opts).await.expect("import") {
            Outcome::Unchanged { .. } => prop_assert_eq!(&before, &state),
            Outcome::Committed(summary) => {
                let v = summary.version;
                prop_assert_eq!(v as usize, states.len());
                states.push(state.clone());
                let diff = store.diff(v - 1, v).await.expect("diff");
                let want_added: Vec<[String; 3]> = state.difference(&before).map(key).collect();
                let want_removed: Vec<[String; 3]> = before.difference(&state).map(key).collect();
                let sorted = |mut v: Vec<[String; 3]>| {
                    v.sort();
                    v
                };
                prop_assert_eq!(diff.added, sorted(want_added));
                prop_assert_eq!(diff.removed, sorted(want_removed));
            }
        }
    }
    for (v, want) in states.iter().enumerate().skip(1) {
        let mut out = Vec::new();
        store.export_tsv(v as i64, &mut out).await.expect("export");
        let got: BTreeSet<String> = String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(str::to_owned)
            .collect();
        let want: BTreeSet<String> = want.iter().map(|t| key(t).join("\t")).collect();
        prop_assert_eq!(got, want, "version {}", v);
        let graph = store.load_graph(v as i64).await.expect("load graph");
        prop_assert_eq!(graph.num_triples(), states[v].len());
    }
    let report = store.verify().await.expect("verify");
    prop_assert!(
        report.first_mismatch.is_none(),
        "{:?}",
        report.first_mismatch
    );
    store.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn export_equals_replay(steps in steps()) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(check(steps))?;
    }
}
