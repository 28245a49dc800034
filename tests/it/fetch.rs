//! `hypograph fetch` through the real binary, offline: `--mirror` points at a loopback server
//! (wiremock, or a raw TCP server that drops the connection mid-file) and `HYPOGRAPH_CACHE` at
//! a temporary directory. The datasets used are the built-in pinned-on-first-use ones (their
//! bytes can be anything); published sums are exercised with the real Hetionet entry (a fake
//! file must be refused) and with a crafted catalog (`HYPOGRAPH_FETCH_CATALOG`).

use crate::support::mt_runtime;
use serde_json::Value;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

struct Cache {
    dir: tempfile::TempDir,
}

impl Cache {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `hypograph fetch ARGS --no-import` (these tests serve bytes no reader would take);
    /// `import_into` fetches and imports.
    fn run(&self, args: &[&str], vars: &[(&str, &Path)]) -> Output {
        let mut all = args.to_vec();
        if !all.contains(&"--list") {
            all.push("--no-import");
        }
        self.command(&all, vars)
    }

    fn command(&self, args: &[&str], vars: &[(&str, &Path)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hypograph"))
            .arg("fetch")
            .args(args)
            .env("HYPOGRAPH_CACHE", self.root())
            .env_remove("HYPOGRAPH_FETCH_CATALOG")
            .env_remove("RUST_LOG")
            .envs(vars.iter().map(|(k, v)| (k, v.as_os_str())))
            .output()
            .expect("run hypograph")
    }

    /// Runs with `--json`, asserts success, returns the result.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all, &[]);
        assert!(
            out.status.success(),
            "fetch {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    /// Runs, asserts failure, returns stderr.
    fn fail(&self, args: &[&str], vars: &[(&str, &Path)]) -> String {
        let out = self.run(args, vars);
        assert!(
            !out.status.success(),
            "fetch {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).expect("utf-8 stderr")
    }

    fn pins(&self) -> Value {
        let text = std::fs::read_to_string(self.root().join("pins.json")).expect("pins.json");
        serde_json::from_str(&text).expect("pins JSON")
    }
}

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Bytes that look like nothing in particular, `n` long.
fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| ((i * 31 + seed as usize) % 251) as u8)
        .collect()
}

/// Serves `body`, honouring `Range: bytes=N-` with 206.
struct Ranged(Vec<u8>);

impl Respond for Ranged {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let start = req
            .headers
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|r| {
                r.strip_prefix("bytes=")?
                    .strip_suffix('-')?
                    .parse::<usize>()
                    .ok()
            });
        let len = self.0.len();
        match start {
            Some(s) if s < len => ResponseTemplate::new(206)
                .insert_header("content-range", format!("bytes {s}-{}/{len}", len - 1))
                .set_body_bytes(self.0[s..].to_vec()),
            _ => ResponseTemplate::new(200).set_body_bytes(self.0.clone()),
        }
    }
}

async fn serve(server: &MockServer, at: &str, body: Vec<u8>) {
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(Ranged(body))
        .mount(server)
        .await;
}

fn ranges(requests: &[Request]) -> Vec<Option<String>> {
    requests
        .iter()
        .map(|r| {
            r.headers
                .get("range")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn first_fetch_pins_the_sum_and_a_second_is_instant() {
    let rt = mt_runtime();
    let body = payload(50_000, 1);
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        serve(&s, "/drkg/drkg.tar.gz", body.clone()).await;
        s
    });
    let cache = Cache::new();
    let uri = server.uri();

    let first = cache.json(&["drkg", "--mirror", &uri]);
    let file = &first["files"][0];
    assert_eq!(file["sum"], "pinned_now");
    assert_eq!(file["origin"]["kind"], "download");
    assert_eq!(file["origin"]["url"], format!("{uri}/drkg/drkg.tar.gz"));
    assert_eq!(file["sha256"], sha(&body));
    assert_eq!(file["bytes"], body.len());
    assert_eq!(first["format"], "drkg");
    let local = cache.root().join("drkg/2020/drkg.tar.gz");
    assert_eq!(file["path"], local.to_str().expect("path"));
    assert_eq!(std::fs::read(&local).expect("cached file"), body);
    assert!(!cache.root().join("drkg/2020/drkg.tar.gz.part").exists());
    let pin = &cache.pins()["files"]["drkg/2020/drkg.tar.gz"];
    assert_eq!(pin["sha256"], sha(&body));
    assert_eq!(pin["size"], body.len());
    assert!(pin["pinned_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(pin["fetched_at"].is_string());

    let requests = rt.block_on(server.received_requests()).expect("recorded");
    assert_eq!(requests.len(), 1);
    let second = cache.json(&["drkg", "--mirror", &uri]);
    assert_eq!(second["files"][0]["sum"], "already_pinned");
    assert_eq!(second["files"][0]["origin"]["kind"], "cache");
    let text = cache.run(&["drkg", "--mirror", &uri], &[]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("cached, matches the pinned sum"), "{text}");
    assert!(text.contains("cite: Ioannidis"), "{text}");
    let requests = rt.block_on(server.received_requests()).expect("recorded");
    assert_eq!(requests.len(), 1, "a cached fetch reaches no server");
}

#[test]
fn a_changed_file_is_refused_naming_expected_and_got() {
    let rt = mt_runtime();
    let (old, new) = (payload(4_000, 2), payload(4_000, 3));
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        serve(&s, "/primekg/kg.csv", old.clone()).await;
        s
    });
    let cache = Cache::new();
    let uri = server.uri();
    cache.json(&["primekg", "--mirror", &uri]);

    // The publisher changes the file; a fetch into another directory downloads it again.
    rt.block_on(async {
        server.reset().await;
        serve(&server, "/primekg/kg.csv", new.clone()).await;
    });
    let to = cache.path("elsewhere");
    let to_s = to.to_str().expect("path");
    let err = cache.fail(&["primekg", "--mirror", &uri, "--to", to_s], &[]);
    assert!(err.contains("kg.csv: checksum mismatch"), "{err}");
    assert!(
        err.contains(&format!("expected sha256 {}", sha(&old))),
        "{err}"
    );
    assert!(err.contains(&format!("got {}", sha(&new))), "{err}");
    assert!(err.contains("pinned on first use at"), "{err}");
    assert!(err.contains("hypograph fetch primekg --repin"), "{err}");
    assert!(!to.join("kg.csv").exists(), "a refused file is not kept");
    assert!(!to.join("kg.csv.part").exists());
    assert_eq!(
        cache.pins()["files"]["primekg/dataverse-file-6180620/kg.csv"]["sha256"],
        sha(&old)
    );

    // Accepting it deliberately pins the new sum.
    let ok = cache.json(&["primekg", "--mirror", &uri, "--to", to_s, "--repin"]);
    assert_eq!(ok["files"][0]["sum"], "pinned_now");
    assert_eq!(std::fs::read(to.join("kg.csv")).expect("file"), new);
    assert_eq!(
        cache.pins()["files"]["primekg/dataverse-file-6180620/kg.csv"]["sha256"],
        sha(&new)
    );
}

#[test]
fn a_wrong_published_sum_is_refused_and_nothing_is_kept() {
    let rt = mt_runtime();
    let body = payload(3_000, 4);
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        serve(&s, "/tiny/edges.tsv", body.clone()).await;
        s
    });
    let cache = Cache::new();
    let catalog = |sum: &str| {
        let p = cache.path("catalog.yaml");
        std::fs::write(
            &p,
            format!(
                "- name: tiny\n  version: '1'\n  homepage: https://example.org\n  licence: CC0 1.0\n  \
                 citation: nobody\n  format: hetionet\n  files:\n    - name: edges.tsv\n      \
                 url: https://example.org/edges.tsv\n      size: {}\n      sha256: {sum}\n      \
                 sum: published\n",
                body.len()
            ),
        )
        .expect("write catalog");
        p
    };
    let wrong = sha(b"something else");
    let cat = catalog(&wrong);
    let err = cache.fail(
        &["tiny", "--mirror", &server.uri()],
        &[("HYPOGRAPH_FETCH_CATALOG", &cat)],
    );
    assert!(err.contains("edges.tsv: checksum mismatch"), "{err}");
    assert!(
        err.contains(&format!("expected sha256 {wrong} (published)")),
        "{err}"
    );
    assert!(err.contains(&format!("got {}", sha(&body))), "{err}");
    let dir = cache.root().join("tiny/1");
    assert!(!dir.join("edges.tsv").exists() && !dir.join("edges.tsv.part").exists());
    let pins = std::fs::read_to_string(cache.root().join("pins.json")).unwrap_or_default();
    assert!(
        !pins.contains("tiny/"),
        "a refused file is not recorded: {pins}"
    );

    // --repin does not override a published sum.
    let err = cache.fail(
        &["tiny", "--mirror", &server.uri(), "--repin"],
        &[("HYPOGRAPH_FETCH_CATALOG", &cat)],
    );
    assert!(err.contains("(published)"), "{err}");

    let cat = catalog(&sha(&body));
    let out = cache.run(
        &["tiny", "--mirror", &server.uri(), "--json"],
        &[("HYPOGRAPH_FETCH_CATALOG", &cat)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["files"][0]["sum"], "published");
    assert_eq!(std::fs::read(dir.join("edges.tsv")).expect("kept"), body);
}

#[test]
fn the_real_hetionet_sum_refuses_a_fake_edges_file() {
    let cache = Cache::new();
    let src = cache.path("offline");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("hetionet-v1.0-edges.sif.gz"), b"not hetionet").expect("write");
    std::fs::write(src.join("hetionet-v1.0-nodes.tsv"), b"id\tname\tkind\n").expect("write");
    let err = cache.fail(&["hetionet", "--from", src.to_str().expect("path")], &[]);
    // The table states the size too, so the fake is refused before its sum is compared.
    assert!(
        err.contains("hetionet-v1.0-edges.sif.gz: expected 12401407 bytes, got 12"),
        "{err}"
    );
    assert!(
        !cache
            .root()
            .join("hetionet/v1.0/hetionet-v1.0-edges.sif.gz")
            .exists()
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let rt = mt_runtime();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&s)
            .await;
        s
    });
    let cache = Cache::new();
    let err = cache.fail(&["primekg", "--mirror", &server.uri()], &[]);
    assert!(
        err.contains(&format!("{}/primekg/kg.csv: HTTP 404", server.uri())),
        "{err}"
    );
    let requests = rt.block_on(server.received_requests()).expect("recorded");
    assert_eq!(requests.len(), 1, "a 404 is not retried");
}

#[test]
fn a_dropped_connection_resumes_with_a_range_request() {
    let rt = mt_runtime();
    let body = payload(300_000, 5);
    let half = body.len() / 2;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    {
        let (body, seen) = (body.clone(), seen.clone());
        rt.spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let head = read_head(&mut conn).await;
                seen.lock().expect("lock").push(head.clone());
                let range = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    if !k.eq_ignore_ascii_case("range") {
                        return None;
                    }
                    v.trim()
                        .strip_prefix("bytes=")?
                        .strip_suffix('-')?
                        .parse::<usize>()
                        .ok()
                });
                let len = body.len();
                let reply = match range {
                    // First: the full length promised, half of it sent, then the line drops.
                    None => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: \"e1\"\r\n\
                             Content-Type: application/octet-stream\r\n\r\n"
                        )
                        .into_bytes();
                        r.extend_from_slice(&body[..half]);
                        r
                    }
                    Some(start) => {
                        let mut r = format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nETag: \"e1\"\r\n\
                             Content-Range: bytes {start}-{}/{len}\r\nConnection: close\r\n\r\n",
                            len - start,
                            len - 1
                        )
                        .into_bytes();
                        r.extend_from_slice(&body[start..]);
                        r
                    }
                };
                let _ = conn.write_all(&reply).await;
                let _ = conn.flush().await;
                let _ = conn.shutdown().await;
            }
        });
    }
    let cache = Cache::new();
    let v = cache.json(&["drkg", "--mirror", &format!("http://{addr}")]);
    assert_eq!(v["files"][0]["sha256"], sha(&body));
    let got = std::fs::read(cache.root().join("drkg/2020/drkg.tar.gz")).expect("file");
    assert!(got == body, "the resumed file is the served file");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(
        !seen[0].to_ascii_lowercase().contains("range:"),
        "{}",
        seen[0]
    );
    assert!(
        seen[1]
            .to_ascii_lowercase()
            .contains(&format!("range: bytes={half}-")),
        "the second request resumes at the first byte not received: {}",
        seen[1]
    );
    assert!(
        seen[1].to_ascii_lowercase().contains("if-range: \"e1\""),
        "and only if the file is still the one begun: {}",
        seen[1]
    );
}

/// Reads an HTTP request head (up to the blank line).
async fn read_head(conn: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A `.part` with nothing to show which version of the file it began (a run killed before
/// this was kept, or a server without `ETag` / `Last-Modified`): on first use no sum can catch
/// a splice, so the download starts over rather than appending the new file's end to it.
#[test]
fn a_part_without_a_validator_is_downloaded_again_whole_on_first_use() {
    let rt = mt_runtime();
    let old = payload(20_000, 6);
    let new = payload(20_000, 7);
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        serve(&s, "/monarch/monarch-kg.tar.gz", new.clone()).await;
        s
    });
    let cache = Cache::new();
    let dir = cache.root().join("monarch/2026-04-14");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("monarch-kg.tar.gz.part"), &old[..7_000]).expect("part");
    let v = cache.json(&["monarch", "--mirror", &server.uri()]);
    assert_eq!(v["files"][0]["origin"]["resumed_from"], 0);
    assert_eq!(v["files"][0]["sha256"], sha(&new));
    assert_eq!(
        std::fs::read(dir.join("monarch-kg.tar.gz")).expect("file"),
        new,
        "the pinned file is the served one, not a splice"
    );
    let requests = rt.block_on(server.received_requests()).expect("recorded");
    assert_eq!(ranges(&requests), [None]);
    assert!(!dir.join("monarch-kg.tar.gz.part").exists());
}

/// What the scripted server below serves, and how.
struct Remote {
    body: Vec<u8>,
    etag: String,
    /// Promise the whole body, send half of it, drop the connection.
    drop_next: bool,
    /// Then publish this version instead (body, ETag).
    then: Option<(Vec<u8>, String)>,
    /// Answer 404 (the run fails, leaving its `.part`).
    gone: bool,
    /// Be gone once the connection was dropped.
    gone_after_drop: bool,
}

/// A raw HTTP server over `remote` that honours `Range` as real servers do: with `If-Range`,
/// only while the validator still matches (else the whole file, 200). Returns its address and
/// the request heads it saw.
fn scripted(
    rt: &tokio::runtime::Runtime,
    remote: Arc<Mutex<Remote>>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log = seen.clone();
    rt.spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let head = read_head(&mut conn).await;
            log.lock().expect("lock").push(head.clone());
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            let reply = {
                let mut r = remote.lock().expect("lock");
                let start = header("range").and_then(|v| {
                    v.strip_prefix("bytes=")?
                        .strip_suffix('-')?
                        .parse::<usize>()
                        .ok()
                });
                let same = header("if-range").is_none_or(|v| v == r.etag);
                let len = r.body.len();
                let out = if r.gone {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
                } else {
                    match start.filter(|&s| same && s < len) {
                        Some(s) => {
                            let mut o = format!(
                                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nETag: {}\r\n\
                                 Content-Range: bytes {s}-{}/{len}\r\nConnection: close\r\n\r\n",
                                len - s,
                                r.etag,
                                len - 1
                            )
                            .into_bytes();
                            o.extend_from_slice(&r.body[s..]);
                            o
                        }
                        None => {
                            let mut o = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: {}\r\n\
                                 Connection: close\r\n\r\n",
                                r.etag
                            )
                            .into_bytes();
                            let end = if r.drop_next { len / 2 } else { len };
                            o.extend_from_slice(&r.body[..end]);
                            o
                        }
                    }
                };
                if r.drop_next && !r.gone {
                    r.drop_next = false;
                    r.gone = r.gone_after_drop;
                    if let Some((body, etag)) = r.then.take() {
                        (r.body, r.etag) = (body, etag);
                    }
                }
                out
            };
            let _ = conn.write_all(&reply).await;
            let _ = conn.flush().await;
            let _ = conn.shutdown().await;
        }
    });
    (format!("http://{addr}"), seen)
}

/// The file changes on the server while a download of it is interrupted: the resume asks
/// `If-Range` with the first response's ETag, the server answers with the whole new file,
/// and what is pinned is that file, not the old start with the new end.
#[test]
fn a_resume_against_a_changed_file_downloads_the_new_file_whole() {
    let rt = mt_runtime();
    let old = payload(300_000, 8);
    let new = payload(300_000, 9);
    let remote = Arc::new(Mutex::new(Remote {
        body: old.clone(),
        etag: "\"v1\"".into(),
        drop_next: true,
        then: Some((new.clone(), "\"v2\"".into())),
        gone: false,
        gone_after_drop: false,
    }));
    let (uri, seen) = scripted(&rt, remote);
    let cache = Cache::new();
    let v = cache.json(&["drkg", "--mirror", &uri]);
    let got = std::fs::read(cache.root().join("drkg/2020/drkg.tar.gz")).expect("file");
    assert!(got == new, "the pinned file is the new version whole");
    assert_eq!(v["files"][0]["sha256"], sha(&new));
    assert_eq!(
        cache.pins()["files"]["drkg/2020/drkg.tar.gz"]["sha256"],
        sha(&new)
    );
    assert_eq!(v["files"][0]["origin"]["resumed_from"], 0);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let resume = seen[1].to_ascii_lowercase();
    assert!(
        resume.contains(&format!("range: bytes={}-", old.len() / 2))
            && resume.contains("if-range: \"v1\""),
        "{resume}"
    );
}

/// A run that stops mid-file leaves its `.part` and the validator it began with; the next run
/// continues it when the server shows (by `If-Range`) that the file is the same.
#[test]
fn a_part_left_by_a_failed_run_is_resumed_while_the_file_is_unchanged() {
    let rt = mt_runtime();
    let body = payload(300_000, 10);
    // Half the file, then 404s: the run fails with its part kept.
    let remote = Arc::new(Mutex::new(Remote {
        body: body.clone(),
        etag: "\"v1\"".into(),
        drop_next: true,
        then: None,
        gone: false,
        gone_after_drop: true,
    }));
    let (uri, seen) = scripted(&rt, remote.clone());
    let cache = Cache::new();
    let fail = cache.fail(&["drkg", "--mirror", &uri], &[]);
    assert!(fail.contains("404"), "{fail}");
    let part = cache.root().join("drkg/2020/drkg.tar.gz.part");
    assert_eq!(
        std::fs::metadata(&part).expect("part kept").len(),
        body.len() as u64 / 2
    );
    remote.lock().expect("lock").gone = false;
    let v = cache.json(&["drkg", "--mirror", &uri]);
    assert_eq!(v["files"][0]["origin"]["resumed_from"], body.len() / 2);
    assert_eq!(v["files"][0]["sha256"], sha(&body));
    let last = seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(last.contains("if-range: \"v1\""), "{last}");
    assert!(!part.exists());
}

#[test]
fn from_needs_no_server_and_then_the_cache_serves() {
    let cache = Cache::new();
    let src = cache.path("usb");
    std::fs::create_dir_all(&src).expect("mkdir");
    let body = payload(5_000, 7);
    std::fs::write(src.join("kg.csv"), &body).expect("write");
    let v = cache.json(&["primekg", "--from", src.to_str().expect("path")]);
    let file = &v["files"][0];
    assert_eq!(file["origin"]["kind"], "copy");
    assert_eq!(file["sum"], "pinned_now");
    assert_eq!(file["sha256"], sha(&body));
    // No --from, no mirror, no network: the cache answers.
    let again = cache.json(&["primekg"]);
    assert_eq!(again["files"][0]["origin"]["kind"], "cache");
    assert_eq!(again["files"][0]["sum"], "already_pinned");

    // A single file named like one of a dataset's files stands for that file only.
    let nodes = cache.path("hetionet-v1.0-nodes.tsv");
    std::fs::write(&nodes, "id\tname\tkind\n").expect("write");
    let err = cache.fail(&["hetionet", "--from", nodes.to_str().expect("path")], &[]);
    assert!(
        err.contains("hetionet-v1.0-edges.sif.gz is not in"),
        "{err}"
    );
}

#[test]
fn list_prints_the_catalog_and_round_trips_as_a_catalog_file() {
    let cache = Cache::new();
    let out = cache.run(&["--list"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for want in [
        "hetionet v1.0  licence: CC0 1.0",
        "hetionet-v1.0-edges.sif.gz",
        "11.8 MiB  sum published",
        "sum pinned on first use",
        "primekg dataverse-file-6180620  licence: CC BY 4.0",
        "drkg 2020  licence: Apache-2.0",
        "monarch 2026-04-14",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let json = cache.run(&["--list", "--json"], &[]);
    let cat = cache.path("catalog.json");
    std::fs::write(&cat, &json.stdout).expect("write");
    let again = cache.run(&["--list"], &[("HYPOGRAPH_FETCH_CATALOG", &cat)]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout), text);

    let err = cache.fail(&["wikidata"], &[]);
    assert!(
        err.contains("unknown dataset \"wikidata\" (known: hetionet, primekg, drkg, monarch)"),
        "{err}"
    );
}

#[test]
fn a_fetch_imports_one_version_naming_the_dataset_version_and_sums() {
    let cache = Cache::new();
    let cat = crate::support::hetionet_fixture_catalog(&cache.path(""));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/hetionet");
    let nodes_sum = sha(&std::fs::read(fixture.join("hetionet-v1.0-nodes.tsv")).expect("fixture"));
    let edges_sum =
        sha(&std::fs::read(fixture.join("hetionet-v1.0-edges.sif.gz")).expect("fixture"));
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/hetionet");
    let db = cache.path("graph.db");
    let out = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(&db)
        .args(["fetch", "hetionet", "--from"])
        .arg(&from)
        .arg("--json")
        .env("HYPOGRAPH_CACHE", cache.root())
        .env("HYPOGRAPH_FETCH_CATALOG", &cat)
        .env_remove("RUST_LOG")
        .output()
        .expect("run hypograph");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["import"]["status"], "committed", "{v}");
    assert!(v["import"]["added"].as_u64() > Some(10_000), "{v}");
    let log = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(&db)
        .args(["graph", "log", "--json"])
        .output()
        .expect("log");
    let log: Value = serde_json::from_slice(&log.stdout).expect("json");
    let message = log[0]["message"].as_str().expect("message");
    assert!(
        message.starts_with("fetch hetionet v1.0-fixture: "),
        "{message}"
    );
    assert!(
        message.contains(&format!("hetionet-v1.0-edges.sif.gz sha256 {edges_sum}")),
        "{message}"
    );
    assert!(
        message.contains(&format!("hetionet-v1.0-nodes.tsv sha256 {nodes_sum}")),
        "{message}"
    );
    assert_eq!(log[0]["source"]["kind"], "fetch");
    assert_eq!(log[0]["source"]["files"][1]["sum"], "published", "{log}");

    // A second fetch is served by the cache and imports nothing new.
    let again = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(&db)
        .args(["fetch", "hetionet"])
        .env("HYPOGRAPH_CACHE", cache.root())
        .env("HYPOGRAPH_FETCH_CATALOG", &cat)
        .env_remove("RUST_LOG")
        .output()
        .expect("run hypograph");
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(text.contains("cached"), "{text}");
    assert!(text.contains("nothing to import"), "{text}");
}
