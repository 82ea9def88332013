//! Unique visitors against real processes: distinct (address, User-Agent) pairs are
//! counted within ±3 % at 10,000 visitors through HTTP and at 100,000 through the
//! stores themselves (the marks ingest computes, applied as flushes apply them: 100,000
//! requests to a debug build cost the suite minutes and test nothing more), on both
//! stores; a visitor's repeat views count once, and nothing but the sketches and the
//! totals is stored.

use crate::support as common;

use std::sync::Arc;

use common::{batches, Backend, RedisServer, TestApp};
use http::{Method, StatusCode};
use viewcounter::event::ArticleId;
use viewcounter::store::{EmbeddedStore, RedisStore, Store};
use viewcounter::visitors::{self, Mark, Salts};

/// Sends one view of `article` from each of `n` distinct visitors (client addresses
/// through a trusted proxy's X-Forwarded-For, and User-Agents), `views_each` times.
async fn visit(app: &TestApp, article: &str, n: u32, views_each: u32) {
    let client = Arc::new(app.client.clone());
    let body = format!(r#"{{"type":"view","article":"{article}"}}"#);
    let mut tasks = tokio::task::JoinSet::new();
    const WORKERS: u32 = 16;
    for w in 0..WORKERS {
        let (client, body) = (client.clone(), body.clone());
        tasks.spawn(async move {
            for i in (w..n).step_by(WORKERS as usize) {
                let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
                let ua = format!("Mozilla/5.0 (X11; Linux x86_64) Reader/{}", i % 7);
                for _ in 0..views_each {
                    let headers = [
                        ("content-type", "application/json"),
                        ("x-forwarded-for", addr.as_str()),
                        ("user-agent", ua.as_str()),
                    ];
                    let r = client.send(Method::POST, "/v1/events", &headers, body.clone()).await;
                    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// Waits until every view of `article` is flushed (visitors are read from the store
/// only), then answers its visitors.
async fn visitors_when_flushed(app: &TestApp, article: &str, views: u64) -> u64 {
    let ok = common::eventually(60, || async { app.client.views(article).await == views }).await;
    assert!(ok, "views of {article} reached {views}");
    let flushed = common::eventually(60, || async {
        app.client.metric("viewcounter_pending_keys").await == 0.0
            && app.client.metric("viewcounter_unacked_events").await == 0.0
    })
    .await;
    assert!(flushed, "everything was flushed");
    app.client.article(article).await["visitors"].as_u64().unwrap()
}

fn within(estimate: u64, truth: u32, tolerance: f64) -> bool {
    (estimate as f64 - f64::from(truth)).abs() <= f64::from(truth) * tolerance
}

async fn visitors_are_counted_within_three_percent(backend: Backend) {
    // Marks go with every flush (the default holds them 10 s): the waits below see
    // them stored once the counts are, and this test is about the estimate.
    let args = [
        "--flush-interval",
        "100ms",
        "--visitor-flush-interval",
        "100ms",
        "--client-ip-header",
        "X-Forwarded-For",
        "--trusted-proxies",
        "127.0.0.1/32",
    ];
    let app = TestApp::start_on(&backend, &args).await;
    visit(&app, "few", 3, 4).await;
    assert_eq!(
        visitors_when_flushed(&app, "few", 12).await,
        3,
        "repeat views count one visitor"
    );
    let n = 10_000;
    visit(&app, "v-10000", n, 1).await;
    let estimate = visitors_when_flushed(&app, "v-10000", u64::from(n)).await;
    eprintln!("{n} distinct visitors estimated as {estimate}");
    assert!(within(estimate, n, 0.03), "{n} visitors estimated as {estimate}");
}

/// 100,000 visitors of one article: the marks ingest computes for 100,000 distinct
/// (address, User-Agent) pairs under today's salt, applied to `store` in batches of
/// 10,000 as successive flushes would carry them, then the store's estimate.
async fn a_hundred_thousand_visitors_are_estimated_within_three_percent(store: Store) {
    let n = 100_000u32;
    let salts = Salts::default();
    let today = visitors::today();
    salts.learn(today, visitors::random_salt());
    let marks: Vec<Mark> = (0..n)
        .map(|i| {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i).into();
            let ua = format!("Mozilla/5.0 (X11; Linux x86_64) Reader/{}", i % 7);
            salts.mark(today, addr, ua.as_bytes()).expect("today's salt is known")
        })
        .collect();
    for (seq, flush) in marks.chunks(10_000).enumerate() {
        let mut delta = batches::views(&[("v-100000", flush.len() as u64, "news")]).remove(0);
        delta.visitors = flush.to_vec();
        delta.visitors.sort_unstable();
        delta.visitors.dedup();
        let batch = batches::batch(seq as u64 + 1, viewcounter::clock::unix_secs() * 1000, vec![delta]);
        store.apply(&batch).await.expect("the batch is applied");
    }
    let article = ArticleId::parse("v-100000").unwrap();
    let estimate = store.visitors(&[article]).await.expect("visitors read")[0];
    eprintln!("{n} distinct visitors estimated as {estimate}");
    assert!(within(estimate, n, 0.03), "{n} visitors estimated as {estimate}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_visitors_are_estimated_within_three_percent_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Embedded(EmbeddedStore::open(dir.path()).unwrap());
    a_hundred_thousand_visitors_are_estimated_within_three_percent(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_visitors_are_estimated_within_three_percent_on_redis() {
    let redis = RedisServer::start();
    let store = Store::Redis(RedisStore::open(&redis.url(), "vc").unwrap());
    a_hundred_thousand_visitors_are_estimated_within_three_percent(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_are_counted_within_three_percent_on_the_embedded_store() {
    visitors_are_counted_within_three_percent(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_are_counted_within_three_percent_on_redis() {
    let redis = RedisServer::start();
    visitors_are_counted_within_three_percent(Backend::Redis(redis.url())).await;
    let keys = redis.cli(&["KEYS", "*"]).unwrap_or_default();
    assert!(!keys.contains("10.0."), "no address is stored: {keys}");
}

/// Visitor marks cost the Redis flush commands per article, so they are written every
/// `--visitor-flush-interval` while counts go every flush; a stop writes them whatever
/// the interval.
async fn visitor_marks_wait_for_their_interval_and_a_stop_writes_them(backend: Backend) {
    let args = [
        "--visitor-flush-interval",
        "1h",
        "--client-ip-header",
        "X-Forwarded-For",
        "--trusted-proxies",
        "127.0.0.1/32",
    ];
    // The flush at start takes the marks along (none yet); the next is due in an hour.
    let app = TestApp::start_on(&backend, &args).await;
    visit(&app, "held", 5, 2).await;
    assert_eq!(
        visitors_when_flushed(&app, "held", 10).await,
        0,
        "counts flushed, marks held"
    );

    let dir = app.stop().await.expect("the app owns its data dir");
    let app = match &backend {
        Backend::Embedded => TestApp::start_in(dir.path(), &[]).await,
        Backend::Redis(_) | Backend::SharedRedis { .. } => TestApp::start_on(&backend, &[]).await,
    };
    assert_eq!(
        app.client.article("held").await["visitors"],
        5,
        "the stop wrote the marks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_marks_wait_for_their_interval_and_a_stop_writes_them_on_the_embedded_store() {
    visitor_marks_wait_for_their_interval_and_a_stop_writes_them(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_marks_wait_for_their_interval_and_a_stop_writes_them_on_redis() {
    let redis = RedisServer::start();
    visitor_marks_wait_for_their_interval_and_a_stop_writes_them(Backend::Redis(redis.url())).await;
}
