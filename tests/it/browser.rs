//! The review web app in real headless Chromium (Debian's chromium and chromium-driver,
//! which `.ci/run` installs): sign in, review by keyboard, undo, escaping, CSRF, roles,
//! asking about a new entity and submitting rows, screenshots under target/screenshots/.

use crate::support::{Env, Server, data, user};
use fantoccini::{ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const XSS: &str = "<img src=x onerror=alert(1)>";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn chromedriver() -> (Killed, u16) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed (Debian: chromium chromium-driver; .ci/run installs them)");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Killed(child), port)
}

/// Headless Chromium through chromedriver on `port`, with its own profile directory.
async fn connect(port: u16, profile: &std::path::Path) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1200,1600",
                     format!("--user-data-dir={}", profile.display())],
        }),
    );
    // Plain HTTP to chromedriver on loopback: no TLS stack needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("connect to chromedriver")
}

/// A KGX copy of the demo graph whose every entity name carries markup.
fn hostile_graph(env: &Env) -> std::path::PathBuf {
    let text = std::fs::read_to_string(data("umls/demo-visible.tsv")).expect("read");
    let mut entities = std::collections::BTreeSet::new();
    let mut edges = String::from("subject\tpredicate\tobject\n");
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        entities.insert(f[0].to_owned());
        entities.insert(f[2].to_owned());
        edges.push_str(&format!("{}\t{}\t{}\n", f[0], f[1], f[2]));
    }
    let mut nodes = String::from("id\tcategory\tname\n");
    for e in &entities {
        nodes.push_str(&format!("{e}\tConcept\t{XSS} {e}\n"));
    }
    env.write("kg/nodes.tsv", nodes);
    env.write("kg/edges.tsv", edges);
    env.path("kg")
}

#[test]
fn review_in_a_real_browser() {
    let env = Env::new();
    let kg = hostile_graph(&env);
    env.write(
        "wf/w.yaml",
        format!(
            "name: w\nschedule: \"0 0 3 * * *\"\ngraph:\n  kgx: {}\n\
             model:\n  dim: 8\n  epochs: 2\n  retrain_epochs: 1\n  ensemble: 2\n  calibration: none\n\
             generate:\n  top_k: 20\nrank:\n  batch: 6\n  max_per_entity: 2\n\
             stages:\n  - name: experts\n    plugin: human\n    quorum: 1\n",
            kg.display()
        ),
    );
    let alice = env
        .ok(&["user", "add", "alice", "--role", "reviewer"])
        .trim()
        .to_owned();
    let carol = env
        .ok(&["user", "add", "carol", "--role", "admin"])
        .trim()
        .to_owned();
    let w = env.path("wf/w.yaml");
    env.ok(&["run", w.to_str().expect("path"), "--wait", "0s"]);
    let workflows = env.path("wf");
    let server = Server::start(&env, &["--workflows", workflows.to_str().expect("path")]);
    let base = server.base.clone();
    let (_driver, port) = chromedriver();
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).expect("mkdir");
    let profile = env.path("chrome-profile");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = connect(port, &profile).await;

        // Sign in: the queue sends us to the login page first.
        c.goto(&format!("{base}/queue")).await.expect("goto");
        assert!(
            c.current_url()
                .await
                .expect("url")
                .as_str()
                .ends_with("/login")
        );
        c.find(Locator::Css("input[name=token]"))
            .await
            .expect("token field")
            .send_keys(&alice)
            .await
            .expect("type");
        c.find(Locator::Css("button[type=submit]"))
            .await
            .expect("button")
            .click()
            .await
            .expect("click");
        c.wait()
            .for_element(Locator::Css(".card[data-id]"))
            .await
            .expect("cards");
        let cards = c
            .find_all(Locator::Css(".card[data-id]"))
            .await
            .expect("cards");
        assert_eq!(cards.len(), 6);

        // Names with markup are text, never markup.
        let head = c
            .find(Locator::Css(".card .head"))
            .await
            .expect("head")
            .text()
            .await
            .expect("text");
        assert!(head.starts_with(XSS), "{head}");
        assert!(
            c.find_all(Locator::Css("main img"))
                .await
                .expect("query")
                .is_empty(),
            "no <img> was created"
        );
        assert!(c.get_alert_text().await.is_err(), "no alert opened");
        std::fs::write(
            shots.join("queue.png"),
            c.screenshot().await.expect("screenshot"),
        )
        .expect("write");

        // Three answers by keyboard, then undo the last.
        let body = c.find(Locator::Css("body")).await.expect("body");
        for (i, key) in ["c", "r", "u"].iter().enumerate() {
            body.send_keys(key).await.expect("key");
            let sel = format!(".card[data-id]:nth-of-type({}) .progress", i + 1);
            let start = Instant::now();
            loop {
                let answered = c
                    .find_all(Locator::Css(".card.answered"))
                    .await
                    .expect("query")
                    .len();
                if answered == i + 1 {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "answer {i} never landed ({sel})"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        body.send_keys("z").await.expect("undo");
        let start = Instant::now();
        while c
            .find_all(Locator::Css(".card.answered"))
            .await
            .expect("query")
            .len()
            != 2
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "undo never landed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // A reviewer cannot open admin pages.
        c.goto(&format!("{base}/dashboard")).await.expect("goto");
        let text = c
            .find(Locator::Css("main"))
            .await
            .expect("main")
            .text()
            .await
            .expect("text");
        assert!(text.contains("Forbidden"), "{text}");

        // Sign out, sign in as the admin, look at the dashboard.
        c.goto(&format!("{base}/queue")).await.expect("goto");
        c.find(Locator::Css("header form.signout button"))
            .await
            .expect("sign out")
            .click()
            .await
            .expect("click");
        c.wait()
            .for_element(Locator::Css("input[name=token]"))
            .await
            .expect("login page");
        c.find(Locator::Css("input[name=token]"))
            .await
            .expect("token")
            .send_keys(&carol)
            .await
            .expect("type");
        c.find(Locator::Css("button[type=submit]"))
            .await
            .expect("button")
            .click()
            .await
            .expect("click");
        // The login page has an <h1> too: wait for the dashboard's own table.
        c.wait()
            .for_element(Locator::XPath("//h2[text()='Graph versions']"))
            .await
            .expect("dashboard");
        let text = c
            .find(Locator::Css("main"))
            .await
            .expect("main")
            .text()
            .await
            .expect("text");
        assert!(
            text.contains("Dashboard") && text.contains("Graph versions"),
            "{text}"
        );
        assert!(
            text.contains("w (round): next"),
            "next scheduled run shown: {text}"
        );
        assert!(
            !c.find_all(Locator::Css("main svg"))
                .await
                .expect("query")
                .is_empty()
        );
        std::fs::write(
            shots.join("dashboard.png"),
            c.screenshot().await.expect("screenshot"),
        )
        .expect("write");
        c.close().await.expect("close");
    });

    // The database saw three answers and one undo, kept as records.
    assert_eq!(
        env.count("SELECT count(*) FROM verdicts WHERE reviewer = 'alice'"),
        3
    );
    assert_eq!(
        env.count("SELECT count(*) FROM verdicts WHERE reviewer = 'alice' AND withdrawn = 0"),
        2
    );
    assert_eq!(
        env.strings("SELECT verdict FROM verdicts WHERE withdrawn = 1"),
        vec!["inconclusive"]
    );
    assert_eq!(
        env.strings("SELECT reason || ' by ' || by_user FROM retractions"),
        vec!["undo by alice"]
    );
    assert!(env.strings("SELECT client FROM verdicts LIMIT 1")[0].starts_with("web; "));
    assert!(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/screenshots/queue.png")
            .is_file()
    );

    // A form posted without its CSRF token is refused, with the right cookie.
    let id = env.count(
        "SELECT id FROM hypotheses WHERE id NOT IN (SELECT hypothesis_id FROM verdicts) LIMIT 1",
    );
    let cookie = crate::support::session(&base, &alice).expect("signed in");
    let (status, metrics) = rt.block_on(async {
        let client = reqwest::Client::new();
        let r = client
            .post(format!("{base}/review/{id}"))
            .header("Cookie", cookie)
            .form(&[("verdict", "confirmed")])
            .send()
            .await
            .expect("post");
        let m = client
            .get(format!("{base}/metrics"))
            .bearer_auth(&carol)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        (r.status().as_u16(), m)
    });
    assert_eq!(status, 403);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM verdicts WHERE hypothesis_id = {id}"
        )),
        0
    );
    assert!(
        metrics.contains("hypograph_rounds{state=\"awaiting\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hypograph_hypotheses{status=\"active\"}"),
        "{metrics}"
    );
}

/// Text of the first element `css` finds.
async fn text_of(c: &fantoccini::Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

#[test]
fn ask_and_submit_in_a_real_browser() {
    let env = Env::new();
    env.ok(&["import", data("umls/train.txt").to_str().expect("path")]);
    env.ok(&["train", "--epochs", "5", "--ensemble", "2", "--dim", "16"]);
    env.write(
        "wf/w.yaml",
        format!(
            "name: w\ngraph:\n  import: {}\nmodel:\n  dim: 8\n  epochs: 2\n  ensemble: 1\n\
             stages:\n  - name: experts\n    plugin: human\n    quorum: 1\n",
            data("umls/train.txt").display()
        ),
    );
    let alice = user(&env, "alice", "reviewer");
    let workflows = env.path("wf");
    let server = Server::start(&env, &["--workflows", workflows.to_str().expect("path")]);
    let base = server.base.clone();
    let (_driver, port) = chromedriver();
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).expect("mkdir");
    let profile = env.path("chrome-profile");
    let name = format!("{XSS} compound X");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let picked = rt.block_on(async {
        let c = connect(port, &profile).await;
        c.goto(&format!("{base}/login")).await.expect("goto");
        c.find(Locator::Css("input[name=token]"))
            .await
            .expect("token field")
            .send_keys(&alice)
            .await
            .expect("type");
        c.find(Locator::Css("button[type=submit]"))
            .await
            .expect("button")
            .click()
            .await
            .expect("click");

        // From the navigation to the form.
        c.wait()
            .for_element(Locator::Css("header a[href='/ask']"))
            .await
            .expect("an Ask link")
            .click()
            .await
            .expect("click");
        c.wait()
            .for_element(Locator::Css("form.ask"))
            .await
            .expect("the form");
        let field = |name: &'static str| {
            let c = c.clone();
            async move {
                c.find(Locator::Css(&format!("form.ask [name={name}]")))
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
            }
        };
        field("entity")
            .await
            .send_keys("new:x")
            .await
            .expect("type");
        field("name").await.send_keys(&name).await.expect("type");
        field("edges")
            .await
            .send_keys("new:x isa entity\nnew:x location_of alga")
            .await
            .expect("type");
        let top = field("top").await;
        top.clear().await.expect("clear");
        top.send_keys("6").await.expect("type");
        c.find(Locator::Css("form.ask button[type=submit]"))
            .await
            .expect("Ask")
            .click()
            .await
            .expect("click");

        // The answer: six rows with evidence, the new entity named as text.
        c.wait()
            .for_element(Locator::Css("table.rows tr.row"))
            .await
            .expect("the answer");
        let rows = c
            .find_all(Locator::Css("table.rows tr.row"))
            .await
            .expect("rows");
        assert_eq!(rows.len(), 6);
        assert!(
            !c.find_all(Locator::Css("table.rows ul.paths li"))
                .await
                .expect("query")
                .is_empty(),
            "evidence paths shown"
        );
        let entity = text_of(&c, ".card.entity").await;
        assert!(entity.contains(&name), "{entity}");
        assert!(entity.contains("behaves like"), "{entity}");
        let claims = text_of(&c, "table.claims").await;
        assert!(
            claims.contains(&format!("{name} (new:x) location_of alga")),
            "{claims}"
        );
        assert!(
            c.find_all(Locator::Css("main img"))
                .await
                .expect("query")
                .is_empty(),
            "no <img> was created"
        );
        assert!(c.get_alert_text().await.is_err(), "no alert opened");
        // The form keeps what was typed.
        assert_eq!(
            field("entity").await.prop("value").await.expect("value"),
            Some("new:x".into())
        );
        std::fs::write(
            shots.join("ask.png"),
            c.screenshot().await.expect("screenshot"),
        )
        .expect("write");

        // Tick two rows and submit them into `w`.
        let mut picked = Vec::new();
        for rank in [2, 4] {
            let row = c
                .find(Locator::Css(&format!("tr.row[data-rank='{rank}']")))
                .await
                .expect("row");
            picked.push(
                row.find(Locator::Css("td.triple"))
                    .await
                    .expect("triple")
                    .text()
                    .await
                    .expect("text"),
            );
            row.find(Locator::Css("input[name=pick]"))
                .await
                .expect("checkbox")
                .click()
                .await
                .expect("tick");
        }
        c.find(Locator::Css("form.submit button[type=submit]"))
            .await
            .expect("Submit")
            .click()
            .await
            .expect("click");
        c.wait()
            .for_element(Locator::Css("dl.confirmation"))
            .await
            .expect("the confirmation");
        let text = text_of(&c, "main").await;
        assert!(text.contains("Submitted"), "{text}");
        assert!(
            text.contains("4 row(s) wait for the next round of w"),
            "two rows and two claims: {text}"
        );
        assert_eq!(text_of(&c, "dd.submission").await, "1");
        assert!(text_of(&c, "dd.version").await.starts_with("2 "), "{text}");
        std::fs::write(
            shots.join("ask-submitted.png"),
            c.screenshot().await.expect("screenshot"),
        )
        .expect("write");
        c.close().await.expect("close");
        picked
    });

    // The ticked rows are the ones waiting.
    let waiting = env.strings(
        "SELECT he.key || ' ' || r.key || ' ' || te.key FROM pinned_candidates p \
         JOIN entities he ON he.id = p.head JOIN relations r ON r.id = p.relation \
         JOIN entities te ON te.id = p.tail WHERE p.origin = 'prediction' ORDER BY p.id",
    );
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    for (w, shown) in waiting.iter().zip(&picked) {
        assert!(
            w.split(' ').all(|key| shown.contains(key)),
            "{w} vs {shown}"
        );
    }
    assert_eq!(
        env.strings("SELECT status FROM pinned_candidates"),
        ["waiting", "waiting", "waiting", "waiting"]
    );
}

#[test]
fn search_box_finds_an_entity_in_a_real_browser() {
    let env = Env::new();
    let script = "<script>document.title='pwned'</script> aspirin";
    let nodes = env.write(
        "nodes.tsv",
        format!(
            "id\tcategory\tname\nDB1\tCompound\t{script}\nDOID:1\tDisease\theadache\nG1\tGene\tPTGS2\n"
        ),
    );
    let edges = env.write(
        "edges.tsv",
        "subject\tpredicate\tobject\nDB1\ttreats\tDOID:1\nDB1\tbinds\tG1\n",
    );
    env.ok(&[
        "import",
        edges.to_str().expect("path"),
        "--nodes",
        nodes.to_str().expect("path"),
    ]);
    let alice = user(&env, "alice", "reviewer");
    let server = Server::start(&env, &[]);
    let base = server.base.clone();
    let (_driver, port) = chromedriver();
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).expect("mkdir");
    let profile = env.path("chrome-profile");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = connect(port, &profile).await;
        c.goto(&format!("{base}/login")).await.expect("goto");
        c.find(Locator::Css("input[name=token]"))
            .await
            .expect("token field")
            .send_keys(&alice)
            .await
            .expect("type");
        c.find(Locator::Css("button[type=submit]"))
            .await
            .expect("button")
            .click()
            .await
            .expect("click");

        // The box in the navigation, typed into and sent with Enter.
        c.wait()
            .for_element(Locator::Css("header form.find input[name=q]"))
            .await
            .expect("a search box")
            .send_keys("aspir\u{E007}")
            .await
            .expect("type");
        c.wait()
            .for_element(Locator::Css("table.hits tr.hit"))
            .await
            .expect("a hit");
        assert_eq!(text_of(&c, "tr.hit td.key").await, "DB1");
        assert_eq!(text_of(&c, "tr.hit td.name").await, script);
        assert!(c.get_alert_text().await.is_err(), "no alert opened");
        assert_ne!(c.title().await.expect("title"), "pwned", "the name ran");
        std::fs::write(
            shots.join("search.png"),
            c.screenshot().await.expect("screenshot"),
        )
        .expect("write");

        // The hit opens the entity's page: its edges, the other ends named.
        c.find(Locator::Css("tr.hit td.key a"))
            .await
            .expect("link")
            .click()
            .await
            .expect("click");
        c.wait()
            .for_element(Locator::Css("table.edges"))
            .await
            .expect("the entity's edges");
        let edges = text_of(&c, "table.edges").await;
        assert!(edges.contains("G1 (PTGS2)"), "{edges}");
        assert!(edges.contains("DOID:1 (headache)"), "{edges}");
        assert_eq!(text_of(&c, "h1.entity").await, script);
        assert_ne!(c.title().await.expect("title"), "pwned", "the name ran");
        c.close().await.expect("close");
    });
}
