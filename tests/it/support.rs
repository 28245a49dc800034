//! Runs the real `hypograph` binary against a temporary database.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub struct Env {
    pub dir: tempfile::TempDir,
    /// The SQLite file (unused when `pg` is set).
    pub db: PathBuf,
    /// A PostgreSQL database of its own instead of the file (see [`Env::postgres`]).
    pub pg: Option<PgDatabase>,
}

/// A database created for one test on the cluster `HYPOGRAPH_TEST_POSTGRES` names (an admin
/// URL; `.ci/postgres` starts one), dropped with it.
pub struct PgDatabase {
    pub url: String,
    admin: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&admin).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
        });
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// A URL naming another database on the same server as `url`.
fn with_database(url: &str, name: &str) -> String {
    let mut u = url::Url::parse(url).expect("HYPOGRAPH_TEST_POSTGRES is a URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

/// A test body `fn(Env)` run as two tests, `NAME::sqlite` and `NAME::postgres` (the second
/// on a database of its own on the cluster `HYPOGRAPH_TEST_POSTGRES` names).
#[macro_export]
macro_rules! on_both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$body($crate::support::Env::sqlite())
            }
            #[test]
            fn postgres() {
                if let Some(env) = $crate::support::Env::postgres() {
                    super::$body(env)
                }
            }
        }
    };
}

pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

impl Env {
    /// A fresh SQLite database; with `HYPOGRAPH_TEST_BACKEND=postgres`, every such test runs
    /// on PostgreSQL instead (those that read the SQLite file itself then fail by design).
    pub fn new() -> Self {
        if std::env::var("HYPOGRAPH_TEST_BACKEND").as_deref() == Ok("postgres")
            && let Some(env) = Self::postgres()
        {
            return env;
        }
        Self::sqlite()
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("graph.db");
        Self { dir, db, pg: None }
    }

    /// An environment on a fresh PostgreSQL database, or `None` (after saying so) when
    /// `HYPOGRAPH_SKIP_POSTGRES=1`. Without either variable the test fails: CI always has
    /// PostgreSQL, and a silently skipped backend would be untested.
    pub fn postgres() -> Option<Self> {
        let admin = match std::env::var("HYPOGRAPH_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var("HYPOGRAPH_SKIP_POSTGRES").as_deref() == Ok("1") => {
                eprintln!("skipped: the PostgreSQL half of this test (HYPOGRAPH_SKIP_POSTGRES=1)");
                return None;
            }
            _ => panic!(
                "this test needs PostgreSQL: set HYPOGRAPH_TEST_POSTGRES to an admin URL \
                 (`.ci/postgres start DIR` prints one) or HYPOGRAPH_SKIP_POSTGRES=1 to skip it"
            ),
        };
        Some(Self::postgres_on(&admin))
    }

    /// An environment on a fresh database of the server `admin` (an admin URL) names.
    pub fn postgres_on(admin: &str) -> Self {
        let admin = admin.to_owned();
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "hg_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (a, n) = (admin.clone(), name.clone());
        block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&a).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {n}")))
                .execute(&mut conn)
                .await
        })
        .unwrap_or_else(|e| panic!("creating a test database on HYPOGRAPH_TEST_POSTGRES: {e}"));
        let mut env = Self::sqlite();
        env.pg = Some(PgDatabase {
            url: with_database(&admin, &name),
            admin,
            name,
        });
        env
    }

    /// The database as the library opens it.
    pub fn location(&self) -> hypograph::store::Location {
        match &self.pg {
            Some(pg) => hypograph::store::Location::Postgres(pg.url.clone()),
            None => hypograph::store::Location::Sqlite(self.db.clone()),
        }
    }

    /// SQL reading the text at `path` (`a.b`) of the JSON document in `column`.
    pub fn json_text(&self, column: &str, path: &str) -> String {
        match &self.pg {
            Some(_) => format!(
                "(CAST({column} AS jsonb) #>> '{{{}}}')",
                path.replace('.', ",")
            ),
            None => format!("json_extract({column}, '$.{path}')"),
        }
    }

    /// Like [`Env::json_text`] for a number.
    pub fn json_num(&self, column: &str, path: &str) -> String {
        match &self.pg {
            Some(_) => format!("CAST({} AS DOUBLE PRECISION)", self.json_text(column, path)),
            None => format!("json_extract({column}, '$.{path}')"),
        }
    }

    /// SQL for the seconds from RFC 3339 text `from` to `to`.
    pub fn seconds_between(&self, from: &str, to: &str) -> String {
        match &self.pg {
            Some(_) => format!(
                "EXTRACT(EPOCH FROM (CAST({to} AS timestamptz) - CAST({from} AS timestamptz)))"
            ),
            None => format!("((julianday({to}) - julianday({from})) * 86400)"),
        }
    }

    /// A PostgreSQL environment's data directory (checkpoint caches) in its temp dir, where a
    /// SQLite one gets it beside the file by default.
    pub fn data_dir_var(&self) -> Option<(&'static str, PathBuf)> {
        self.pg
            .as_ref()
            .map(|_| ("HYPOGRAPH_DATA", self.dir.path().join("hypograph-data")))
    }

    /// What `--db` gets: the file, or the PostgreSQL URL.
    pub fn db_arg(&self) -> std::ffi::OsString {
        match &self.pg {
            Some(pg) => pg.url.clone().into(),
            None => self.db.clone().into_os_string(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file under the temp dir and returns its path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write file");
        p
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hypograph {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs and asserts a non-zero exit; returns stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "hypograph {args:?} should have failed; stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).expect("utf-8 stderr")
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).expect("valid JSON on stdout")
    }

    /// The graph at `version` as sorted lines.
    pub fn export(&self, version: &str) -> Vec<String> {
        let text = self.ok(&["graph", "export", "--version", version, "-"]);
        sorted_lines(&text)
    }

    /// Edits the database behind hypograph's back.
    pub fn sql(&self, statement: &str) {
        self.try_sql(statement).expect("tamper statement");
    }

    /// Like [`Env::sql`], returning the database's refusal.
    pub fn try_sql(&self, statement: &str) -> Result<(), sqlx::Error> {
        let (url, statement) = (self.sql_url(false), statement.to_owned());
        block_on(async move {
            use sqlx::Connection;
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .map(drop)
        })
    }

    /// A URL for a connection of the test's own (read-only on SQLite when asked).
    fn sql_url(&self, read_only: bool) -> String {
        match &self.pg {
            Some(pg) => pg.url.clone(),
            None => format!(
                "sqlite://{}?mode={}",
                self.db.display(),
                if read_only { "ro" } else { "rwc" }
            ),
        }
    }
}

impl Env {
    /// Runs with extra environment variables; returns the raw output.
    pub fn run_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hypograph"))
            .arg("--db")
            .arg(self.db_arg())
            .args(args)
            .envs(self.data_dir_var())
            .env_remove("RUST_LOG")
            .env_remove("HYPOGRAPH_DB")
            .env_remove("HYPOGRAPH_TOKEN")
            .envs(vars.iter().copied())
            .output()
            .expect("run hypograph")
    }

    /// Like [`Env::strings`], but `None` while the database or its tables do not exist yet
    /// (another process is still creating it): for polling a process under test.
    pub fn try_strings(&self, query: &str) -> Option<Vec<String>> {
        if self.pg.is_none() && !self.db.exists() {
            return None;
        }
        self.query_strings(query).ok()
    }

    /// One text column of a query, row by row (read-only).
    pub fn strings(&self, query: &str) -> Vec<String> {
        self.query_strings(query)
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    fn query_strings(&self, query: &str) -> Result<Vec<String>, sqlx::Error> {
        let (url, query) = (self.sql_url(true), query.to_owned());
        block_on(async move {
            use sqlx::{Connection, Row};
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&url).await?;
            sqlx::query(sqlx::AssertSqlSafe(query))
                .fetch_all(&mut conn)
                .await?
                .iter()
                .map(|r| Ok(r.try_get::<Option<String>, _>(0)?.unwrap_or_default()))
                .collect()
        })
    }

    pub fn count(&self, query: &str) -> i64 {
        self.strings(&format!("SELECT CAST(({query}) AS TEXT)"))
            .first()
            .and_then(|s| s.parse().ok())
            .expect("a count")
    }
}

pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v.dedup();
    v
}

pub fn file_lines(path: &Path) -> Vec<String> {
    sorted_lines(&std::fs::read_to_string(path).expect("read file"))
}

/// A small, fast workflow on the demo split whose stages are given as YAML (10 hypotheses).
pub fn staged_workflow(stages: &str) -> String {
    format!(
        "name: w\n\
         graph:\n  import: {visible}\n\
         model:\n  dim: 8\n  epochs: 2\n  retrain_epochs: 1\n  ensemble: 1\n  calibration: none\n\
         generate:\n  top_k: 20\n\
         rank:\n  batch: 10\n  max_per_entity: 3\n\
         stages:\n{stages}\
         seed: 5\n",
        visible = data("umls/demo-visible.tsv").display(),
    )
}

/// A multi-threaded runtime, so loopback servers keep serving while a test blocks.
pub fn mt_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `hypograph serve` on a free port; killed on drop.
pub struct Server {
    child: std::process::Child,
    pub base: String,
    /// What the server wrote to stderr, shown when a test fails.
    log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Server {
    /// Starts `hypograph serve` with `extra` arguments and waits for its address.
    pub fn start(env: &Env, extra: &[&str]) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hypograph"))
            .arg("--db")
            .arg(env.db_arg())
            .envs(env.data_dir_var())
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut reader = std::io::BufReader::new(stderr);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).expect("read");
        // Keep draining (a closed pipe would make the server's later log lines fail) into a
        // buffer that a failing test prints.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = std::io::Read::read(&mut reader, &mut chunk) {
                if n == 0 {
                    break;
                }
                if let Ok(mut l) = sink.lock() {
                    l.extend_from_slice(&chunk[..n]);
                }
            }
        });
        let base = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in `{line}`"))
            .to_owned();
        Self { child, base, log }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Ok(log) = self.log.lock()
        {
            eprintln!(
                "--- the server's log ---\n{}",
                String::from_utf8_lossy(&log)
            );
        }
    }
}

/// Adds a user and returns their token.
pub fn user(env: &Env, name: &str, role: &str) -> String {
    env.ok(&["user", "add", name, "--role", role])
        .trim()
        .to_owned()
}

/// The value of cookie `name` among a response's `Set-Cookie` headers.
pub fn set_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The hidden `csrf` field of a form page.
pub fn form_csrf(html: &str) -> String {
    let start = html
        .find("name=\"csrf\" value=\"")
        .map(|i| i + "name=\"csrf\" value=\"".len())
        .unwrap_or_else(|| panic!("a csrf field in {html}"));
    html[start..].split('"').next().expect("a token").to_owned()
}

/// Signs in through the sign-in page as a browser does (its login cookie and CSRF token) with
/// `token`: the `Cookie` header of the session, or `None` when the token does not sign in.
pub fn sign_in(base: &str, token: &str) -> Option<String> {
    mt_runtime().block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let page = client
            .get(format!("{base}/login"))
            .send()
            .await
            .expect("the sign-in page");
        let nonce = set_cookie(page.headers(), "hg_login").expect("a login cookie");
        let csrf = form_csrf(&page.text().await.expect("html"));
        let resp = client
            .post(format!("{base}/login"))
            .header("Cookie", format!("hg_login={nonce}"))
            .form(&[("token", token), ("csrf", &csrf)])
            .send()
            .await
            .expect("sign in");
        set_cookie(resp.headers(), "hg_session").map(|id| format!("hg_session={id}"))
    })
}

/// The session of `token` on the server at `base`, signed in once per test process and
/// reused (so a CSRF token read from one page fits the next form, as in one browser).
pub fn session(base: &str, token: &str) -> Option<String> {
    static SESSIONS: std::sync::Mutex<Vec<(String, String, String)>> =
        std::sync::Mutex::new(Vec::new());
    let known = SESSIONS
        .lock()
        .ok()?
        .iter()
        .find(|(b, t, _)| b == base && t == token)
        .map(|(_, _, c)| c.clone());
    if known.is_some() {
        return known;
    }
    let cookie = sign_in(base, token)?;
    if let Ok(mut all) = SESSIONS.lock() {
        all.push((base.to_owned(), token.to_owned(), cookie.clone()));
    }
    Some(cookie)
}

/// `scheme://host:port` of a URL.
fn base_of(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    url[after..].find('/').map_or(url, |i| &url[..after + i])
}

/// One request: status, `Content-Type` and body text. With `cookie` (a token), the request
/// carries the session of a sign-in with it (none if it does not sign in).
pub fn request(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    cookie: Option<&str>,
    body: Option<&Value>,
) -> (u16, String, String) {
    let session = cookie.and_then(|t| session(base_of(url), t));
    mt_runtime().block_on(async {
        let mut req = reqwest::Client::new()
            .request(method, url)
            .timeout(Duration::from_secs(60));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = session {
            req = req.header("Cookie", c);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("the server answers");
        let status = resp.status().as_u16();
        let kind = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (status, kind, resp.text().await.expect("body"))
    })
}

/// A GET's status and body text.
pub fn get_text(url: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = request(reqwest::Method::GET, url, token, None, None);
    (status, body)
}

/// The review queue's page as `token`'s signed-in browser gets it (a session cookie).
pub fn queue_page(base: &str, token: &str) -> String {
    let cookie = session(base, token).expect("signed in");
    mt_runtime().block_on(async {
        reqwest::Client::new()
            .get(format!("{base}/queue"))
            .header("Cookie", cookie)
            .send()
            .await
            .expect("queue page")
            .text()
            .await
            .expect("html")
    })
}

/// A GET with a bearer token, its body as JSON (`Null` if it is not).
pub fn get_json(url: &str, token: &str) -> (u16, Value) {
    let (status, body) = get_text(url, Some(token));
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A POST of JSON with a bearer token, the answer as JSON (`Null` if it is not).
pub fn post_json(url: &str, token: &str, body: &Value) -> (u16, Value) {
    let (status, _, text) = request(reqwest::Method::POST, url, Some(token), None, Some(body));
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `hypograph run FILE --wait 0s`: drives the workflow's round as far as it goes now.
pub fn run_now(env: &Env, file: &std::path::Path) -> String {
    env.ok(&["run", file.to_str().expect("path"), "--wait", "0s"])
}

/// Writes (into `dir`) a fetch catalog that names the Hetionet-format fixture's files with
/// their real sums (the edges' published, the nodes' pinned on first use), so `fetch hetionet
/// --from tests/fixtures/formats/hetionet` and a workflow's `graph.fetch` work offline.
pub fn hetionet_fixture_catalog(dir: &Path) -> PathBuf {
    use sha2::Digest;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/hetionet");
    let edges = std::fs::read(fixture.join("hetionet-v1.0-edges.sif.gz")).expect("fixture");
    let p = dir.join("catalog.yaml");
    std::fs::write(
        &p,
        format!(
            "- name: hetionet\n  version: v1.0-fixture\n  homepage: https://het.io\n  licence: CC0 1.0\n  \
             citation: fixture\n  format: hetionet\n  files:\n    - name: hetionet-v1.0-nodes.tsv\n      \
             url: https://example.org/nodes.tsv\n      sum: pinned_on_first_use\n    \
             - name: hetionet-v1.0-edges.sif.gz\n      url: https://example.org/edges.sif.gz\n      \
             size: {}\n      sha256: {:x}\n      sum: published\n",
            edges.len(),
            sha2::Sha256::digest(&edges)
        ),
    )
    .expect("write catalog");
    p
}

/// The bundled example assay service (`plugins/example_assay.py`) on a free port, started with
/// `args` and `vars`; killed on drop.
pub struct ExampleAssay {
    child: std::process::Child,
    pub base: String,
}

impl ExampleAssay {
    pub fn start(args: &[&std::ffi::OsStr], vars: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/example_assay.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--port", "0"])
            .args(args)
            .envs(vars.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs the example service");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the service's address");
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in `{line}`"))
            .trim_end_matches('/')
            .to_owned();
        Self { child, base }
    }
}

impl Drop for ExampleAssay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
