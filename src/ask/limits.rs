//! How large one prompt may be. Every value bounds work (and memory) that one request makes
//! a server do: without them a 120 KB body of bare entities asked for billions of scores. A
//! prompt over a limit is refused before anything is resolved, with the limit and the value;
//! the server answers 413. The same limits hold for the CLI and the `/ask` page.

use super::{Problem, Prompt};

/// New entities per prompt. Each one is folded into every ensemble member and, in "every
/// relation" mode, ranked against every trained entity of every relation that fits it; an
/// ask is about a handful of new things, not a bulk import (`hypograph import` is).
pub const MAX_ENTITIES: usize = 32;
/// Claimed edges per prompt. Fold-in costs steps × edges × negatives per member; a few
/// dozen edges place an entity, and more than this is a graph to import.
pub const MAX_EDGES: usize = 256;
/// Context entities plus context relations. Each is a lookup and narrows the candidates;
/// the bound keeps a body from holding a list the size of the graph.
pub const MAX_CONTEXT: usize = 1_000;
/// Predict lines. Each is one query (or, with `?` for the relation, one per fitting
/// relation and direction).
pub const MAX_PREDICT: usize = 64;
/// Candidate triples scored per prompt, over all its queries. Scoring time grows with it
/// (memory does not: only the `top` best are kept). 1,000,000 covers every relation of a
/// few new genes on a Hetionet-sized graph (about 200,000 candidates each).
pub const MAX_CANDIDATES: usize = 1_000_000;
/// Rows in one answer: each row's evidence paths are searched.
pub const MAX_TOP: usize = 1_000;

/// The prompt's counts against the limits that need no graph.
pub fn check(prompt: &Prompt) -> Result<(), Vec<Problem>> {
    let context = prompt.context.entities.len() + prompt.context.relations.len();
    let counts = [
        (
            "entities",
            "new entities",
            prompt.entities.len(),
            MAX_ENTITIES,
        ),
        ("edges", "claimed edges", prompt.edges.len(), MAX_EDGES),
        ("context", "context entries", context, MAX_CONTEXT),
        (
            "predict",
            "predict lines",
            prompt.predict.len(),
            MAX_PREDICT,
        ),
    ];
    let mut problems: Vec<Problem> = counts
        .into_iter()
        .filter(|&(_, _, n, max)| n > max)
        .map(|(path, what, n, max)| Problem::new(path, over(what, n, max)))
        .collect();
    if prompt.top > MAX_TOP {
        problems.push(Problem::new("top", over("rows", prompt.top, MAX_TOP)));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The message for a count over its limit.
pub fn over(what: &str, n: usize, max: usize) -> String {
    format!("{n} {what}: at most {max} per ask")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_count_is_refused_past_its_limit_only() {
        let mut p = Prompt {
            top: MAX_TOP,
            ..Prompt::default()
        };
        p.entities = vec![Default::default(); MAX_ENTITIES];
        p.edges = vec![Default::default(); MAX_EDGES];
        p.predict = vec![Default::default(); MAX_PREDICT];
        p.context.entities = vec![String::new(); MAX_CONTEXT];
        assert_eq!(check(&p), Ok(()));
        p.entities.push(Default::default());
        p.edges.push(Default::default());
        p.predict.push(Default::default());
        p.context.relations.push(String::new());
        p.top += 1;
        let paths: Vec<String> = check(&p)
            .expect_err("over the limits")
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(paths, ["entities", "edges", "context", "predict", "top"]);
    }
}
