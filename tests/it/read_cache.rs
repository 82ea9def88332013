//! Reads a CDN can absorb: `Cache-Control`, `ETag` and 304 on the read routes, and a
//! real caching proxy (nginx with deploy/nginx.conf) in front showing that repeated
//! reads within the max-age do not reach the service.

use crate::support as common;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{eventually, Client, TestApp};
use http::{Method, StatusCode};

const ARTICLE_READS: &str = r#"viewcounter_http_requests_total{route="/v1/articles/{article}",status="200"}"#;

#[tokio::test]
async fn reads_carry_a_max_age_and_an_etag_and_a_matching_if_none_match_gets_304() {
    let app = TestApp::start(&["--read-max-age", "30s"]).await;
    app.client.view("cached").await;
    // Once the view is stored, with its visitor (which reads take from the store only),
    // nothing changes between two reads, so the second must match the first's tag.
    app.wait_metric_above(common::FLUSH_OK, 0.0, 60).await;
    assert!(
        eventually(60, || async { app.client.article("cached").await["visitors"] == 1 }).await,
        "the view's visitor is stored"
    );
    for path in [
        "/v1/articles/cached",
        "/v1/articles?ids=cached,other",
        "/v1/top?window=all",
    ] {
        let first = app.client.get(path).await;
        assert_eq!(first.status, StatusCode::OK, "{path}");
        assert_eq!(first.header("cache-control"), "public, max-age=30", "{path}");
        let tag = first.header("etag");
        assert!(tag.starts_with('"') && tag.len() > 2, "{path}: {tag}");
        let again = app.client.send(Method::GET, path, &[("if-none-match", &tag)], "").await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), tag);
    }
    // Ingest and errors are never cacheable.
    let pixel = app.client.get("/v1/pixel.gif?type=view&article=cached").await;
    assert_eq!(pixel.header("cache-control"), "no-store");
    let bad = app.client.get("/v1/articles/bad%20id").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.header("etag"), "");
}

#[tokio::test]
async fn a_zero_read_max_age_sends_no_store() {
    let app = TestApp::start(&["--read-max-age", "0s"]).await;
    let r = app.client.get("/v1/articles/a").await;
    assert_eq!(r.header("cache-control"), "no-store");
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// nginx on deploy/nginx.conf, with the upstreams, port and paths pointed at the test.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Nginx {
    fn start(upstream: SocketAddr, dir: &Path) -> Nginx {
        let port = free_port();
        let conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf")).unwrap();
        let d = dir.display();
        let mut out = String::new();
        let mut upstream_done = false;
        for line in conf.lines() {
            let t = line.trim_start();
            if t.starts_with("server viewcounter-") {
                if !upstream_done {
                    out.push_str(&format!("        server {upstream};\n"));
                    upstream_done = true;
                }
                continue;
            }
            let line = line
                .replace("pid /tmp/nginx.pid;", &format!("pid {d}/nginx.pid;\nerror_log {d}/error.log;"))
                .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
                .replace("/var/cache/nginx/viewcounter", &format!("{d}/cache"))
                .replace(
                    "http {",
                    &format!(
                        "http {{\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;"
                    ),
                );
            out.push_str(&line);
            out.push('\n');
        }
        assert!(upstream_done, "deploy/nginx.conf names its upstream servers");
        let path = dir.join("nginx.conf");
        std::fs::write(&path, out).unwrap();
        let child = Command::new("nginx")
            .args([
                "-p",
                &d.to_string(),
                "-c",
                &path.display().to_string(),
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        Nginx {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn repeated_reads_through_nginx_within_the_max_age_do_not_reach_the_service() {
    let app = TestApp::start(&["--read-max-age", "60s"]).await;
    let dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(app.addr, dir.path());
    let proxy = Client::new(nginx.addr);
    assert!(
        eventually(30, || async {
            tokio::net::TcpStream::connect(nginx.addr).await.is_ok()
        })
        .await,
        "nginx listens"
    );
    // Ingest goes through the proxy uncached.
    for _ in 0..3 {
        let r = proxy.post_events(r#"{"type":"view","article":"busy"}"#).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    assert_eq!(app.client.views("busy").await, 3);
    let before = app.client.metric(ARTICLE_READS).await;

    let mut statuses = Vec::new();
    for _ in 0..20 {
        let r = proxy.get("/v1/articles/busy").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["views"], 3);
        statuses.push(r.header("x-cache-status"));
    }
    let reached = app.client.metric(ARTICLE_READS).await - before;
    assert_eq!(
        reached, 1.0,
        "20 reads through nginx reached the service {reached} times: {statuses:?}"
    );
    assert_eq!(statuses[0], "MISS");
    assert!(statuses[1..].iter().all(|s| s == "HIT"), "{statuses:?}");
}
