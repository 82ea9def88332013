//! Time to serve after a restart on a large store: the embedded store's file (or, with
//! `--redis`, a private redis-server) is filled with N articles' totals, written
//! straight where flushes leave them (one views counter per article, each with a
//! section and language), then the service starts in process and the time to the
//! first 202 and to `/readyz` 200 (the rankings loaded in the background) are
//! measured, with the RSS after the load.
//!
//! Run: `cargo bench --bench restart -- [--articles 2000000] [--redis]`

#[path = "../tests/it/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn articles() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--articles")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(2_000_000)
}

fn fill(dir: &std::path::Path, n: usize) {
    const COUNTS: redb::TableDefinition<(&str, &str), u64> = redb::TableDefinition::new("counts");
    const META: redb::TableDefinition<&str, (Option<&str>, Option<&str>)> = redb::TableDefinition::new("meta");
    let db = redb::Database::create(dir.join(viewcounter::store::embedded::FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut counts = txn.open_table(COUNTS).unwrap();
        let mut meta = txn.open_table(META).unwrap();
        for i in 0..n {
            let id = format!("article-{i:07}");
            counts.insert((id.as_str(), "views"), 1 + (i as u64 % 997)).unwrap();
            let section = format!("s{}", i % 20);
            meta.insert(id.as_str(), (Some(section.as_str()), Some("en"))).unwrap();
        }
    }
    txn.commit().unwrap();
}

/// The totals and metadata of `n` articles, as the flush scripts leave them in Redis
/// (`<prefix>:{pN}:counts` and `:meta` hashes), one pipeline per 10,000 articles.
fn fill_redis(url: &str, n: usize) {
    use viewcounter::store::redis::keys::{article_field, Keys, Partition, VIEWS_FIELD};
    let keys = Keys::new("vc");
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    for from in (0..n).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in from..n.min(from + 10_000) {
            let id = format!("article-{i:07}");
            let p = Partition::of(&id);
            pipe.hset(keys.counts(p), article_field(&id, VIEWS_FIELD), 1 + (i as u64 % 997))
                .ignore();
            pipe.hset(keys.meta(p), article_field(&id, "section"), format!("s{}", i % 20))
                .ignore()
                .hset(keys.meta(p), article_field(&id, "lang"), "en")
                .ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
    }
}

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

fn main() {
    let n = articles();
    let dir = tempfile::tempdir().unwrap();
    let filled = Instant::now();
    let redis = std::env::args()
        .any(|a| a == "--redis")
        .then(redis_server::RedisServer::start);
    match &redis {
        Some(redis) => fill_redis(&redis.url(), n),
        None => fill(dir.path(), n),
    }
    eprintln!("filled {n} articles in {:.1?}", filled.elapsed());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rss_before = rss();
    let started = Instant::now();
    let data_dir = dir.path().display().to_string();
    let mut args = vec!["viewcounter", "--listen", "127.0.0.1:0", "--data-dir", &data_dir];
    let url = redis.as_ref().map(|r| r.url());
    if let Some(url) = &url {
        args.extend(["--redis-url", url.as_str()]);
    }
    let config = viewcounter::Config::parse_from(args);
    rt.block_on(async move {
        let app = viewcounter::App::build(config).await.expect("service builds");
        let addr = app.public_addr();
        tokio::spawn(app.run_until(tokio_util::sync::CancellationToken::new()));
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let post = http::Request::post(format!("http://{addr}/v1/events"))
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(
                br#"{"type":"view","article":"after-restart"}"#,
            )))
            .unwrap();
        let status = client.request(post).await.unwrap().status();
        let first_202 = started.elapsed();
        assert_eq!(status, http::StatusCode::ACCEPTED);
        loop {
            let req = http::Request::get(format!("http://{addr}/readyz"))
                .body(Full::default())
                .unwrap();
            let resp = client.request(req).await.unwrap();
            let ok = resp.status().is_success();
            let _ = resp.into_body().collect().await;
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let loaded = started.elapsed();
        println!(
            "| {n} | {:.2} | {:.1} | {} |",
            first_202.as_secs_f64(),
            loaded.as_secs_f64(),
            (rss() - rss_before) / 1_000_000
        );
    });
}
