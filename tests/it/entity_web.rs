//! Finding entities on the server: `GET /api/v1/entities` (token, results, limit bounds),
//! the results page and an entity's page (names escaped, edges paged), and names on the
//! version diff page.

use crate::support::{Env, Server, get_json, request, user};

const SCRIPT: &str = "<script>document.title='pwned'</script> aspirin";

/// A hub with 60 live edges, an aspirin whose name carries a script, a second aspirin, and a
/// later version adding one named edge.
fn graph(env: &Env) {
    let mut nodes = String::from("id\tcategory\tname\n");
    nodes.push_str(&format!("DB1\tCompound\t{SCRIPT}\n"));
    nodes.push_str("DB2\tCompound\tbuffered aspirin\nHUB\tGene\tTP53\n");
    let mut edges = String::from("subject\tpredicate\tobject\nDB1\ttreats\tD0\nDB1\tbinds\tHUB\n");
    for i in 0..59 {
        nodes.push_str(&format!("D{i}\tDisease\tdisease {i}\n"));
        edges.push_str(&format!("HUB\tassociates\tD{i}\n"));
    }
    let n = env.write("nodes.tsv", nodes);
    let e = env.write("edges.tsv", edges);
    env.ok(&[
        "import",
        e.to_str().expect("path"),
        "--nodes",
        n.to_str().expect("path"),
    ]);
    let more = env.write("more.tsv", "DB2\ttreats\tD1\n");
    env.ok(&["import", more.to_str().expect("path")]);
}

fn page(url: &str, cookie: &str) -> (u16, String) {
    let (status, _, body) = request(reqwest::Method::GET, url, None, Some(cookie), None);
    (status, body)
}

#[test]
fn entity_search_api_and_pages() {
    let env = Env::new();
    graph(&env);
    let alice = user(&env, "alice", "reviewer");
    let carol = user(&env, "carol", "admin");
    let svc = user(&env, "lab", "service");
    let server = Server::start(&env, &[]);
    let api = |query: &str, token: &str| {
        get_json(&format!("{}/api/v1/entities?{query}", server.base), token)
    };

    // A bearer token is required, and services do not search.
    let (status, _, _) = request(
        reqwest::Method::GET,
        &format!("{}/api/v1/entities?q=aspirin", server.base),
        None,
        None,
        None,
    );
    assert_eq!(status, 401);
    assert_eq!(api("q=aspirin", "not-a-token").0, 401);
    assert_eq!(api("q=aspirin", &svc).0, 403);

    // Results: key, name, category and live degree, names that start with the text first.
    let (status, v) = api("q=aspirin", &alice);
    assert_eq!(status, 200, "{v}");
    let hits = v["entities"].as_array().expect("entities");
    assert_eq!(hits.len(), 2, "{v}");
    let db1 = hits.iter().find(|h| h["key"] == "DB1").expect("DB1");
    assert_eq!(db1["name"], SCRIPT);
    assert_eq!(db1["category"], "Compound");
    assert_eq!(db1["degree"], 2);
    let (_, v) = api("q=TP53", &carol);
    assert_eq!(v["entities"][0]["key"], "HUB", "{v}");
    assert_eq!(v["entities"][0]["degree"], 60, "{v}");

    // Limit bounds.
    let (_, v) = api("q=disease&limit=5", &alice);
    assert_eq!(v["entities"].as_array().map(Vec::len), Some(5), "{v}");
    let (_, v) = api("q=disease", &alice);
    assert_eq!(
        v["entities"].as_array().map(Vec::len),
        Some(20),
        "default 20: {v}"
    );
    for bad in ["limit=0", "limit=201", "limit=-1", "limit=ten"] {
        let (status, v) = api(&format!("q=disease&{bad}"), &alice);
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"].as_str().expect("error").contains("limit"), "{v}");
    }
    let (status, v) = api("q=%20", &alice);
    assert_eq!(status, 400, "{v}");

    // The results page: the script is text, never markup, and links to the entity.
    let (status, html) = page(&format!("{}/entities?q=aspirin", server.base), &alice);
    assert_eq!(status, 200);
    assert!(html.contains("&lt;script&gt;document.title"), "{html}");
    assert!(!html.contains("<script>document"), "{html}");
    assert!(html.contains(r#"href="/entity?key=DB1""#), "{html}");
    let (status, html) = page(
        &format!("{}/entities?q=nothing-like-it", server.base),
        &alice,
    );
    assert_eq!(status, 200);
    assert!(html.contains("No entity matches"), "{html}");
    // Signed out: the sign-in page.
    let (_, html) = page(&format!("{}/entities?q=aspirin", server.base), "wrong");
    assert!(html.contains("Sign in"), "{html}");

    // An entity's page: its live edges with both ends named, 50 to a page.
    let (status, html) = page(&format!("{}/entity?key=DB1", server.base), &alice);
    assert_eq!(status, 200);
    assert!(html.contains("2 live edges"), "{html}");
    assert!(html.contains("(disease 0)"), "{html}");
    assert!(html.contains("(TP53)"), "{html}");
    assert!(!html.contains("<script>document"), "{html}");
    let (_, first) = page(&format!("{}/entity?key=HUB", server.base), &alice);
    assert_eq!(first.matches(r#"<tr class="edge">"#).count(), 50, "{first}");
    assert!(first.contains("page=1"), "a link to the next page: {first}");
    let (_, second) = page(&format!("{}/entity?key=HUB&page=1", server.base), &alice);
    assert_eq!(
        second.matches(r#"<tr class="edge">"#).count(),
        10,
        "{second}"
    );
    let (status, _) = page(&format!("{}/entity?key=HUB&page=x", server.base), &alice);
    assert_eq!(status, 400);
    let (status, html) = page(&format!("{}/entity?key=nope", server.base), &alice);
    assert_eq!(status, 200);
    assert!(html.contains("No such entity"), "{html}");

    // The version diff names both ends.
    let (status, html) = page(&format!("{}/versions/1/2", server.base), &carol);
    assert_eq!(status, 200);
    assert!(
        html.contains("DB2 <span class=\"cat\">(buffered aspirin)</span>"),
        "{html}"
    );
    assert!(html.contains("(disease 1)"), "{html}");
}
