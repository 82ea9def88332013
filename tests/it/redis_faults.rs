//! Fault tests of the Redis store against a real redis-server: kills, stalls longer
//! than the client timeout, and a load running through them. Whatever happens, Redis
//! ends up holding exactly the events that got a 2xx.

use crate::support as common;
use crate::support::load;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, RedisServer, TestApp, FLUSH_DUPLICATE, FLUSH_ERROR, FLUSH_OK};
use load::{assert_redis_holds, Load};
use viewcounter::counter::CounterMap;
use viewcounter::event::{Counter, Event, Networks};
use viewcounter::flusher::InFlight;
use viewcounter::flusher::{FlushSettings, Flusher};
use viewcounter::metrics::Metrics;
use viewcounter::store::redis::keys::{Keys, Partition, PARTITIONS};
use viewcounter::store::Store;

async fn app_on(redis: &RedisServer, extra: &[&str]) -> TestApp {
    let url = redis.url();
    let mut args = vec!["--redis-url", url.as_str()];
    args.extend_from_slice(extra);
    TestApp::start(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_twice_under_load_ends_with_exactly_the_accepted_events() {
    let mut redis = RedisServer::start();
    // During an outage the journal soon reaches this cap (one tick's record of ~2,000
    // articles is larger), and new keys get 503, which must count nothing.
    let app = app_on(&redis, &["--max-pending-keys", "4000", "--journal-max-bytes", "100000"]).await;
    let load = Load::start(&app.client, 4);

    for _ in 0..2 {
        load.wait_accepted(3_000).await;
        redis.kill();
        load.wait_refused(20).await;
        let errors = app.client.metric(FLUSH_ERROR).await;
        assert!(errors >= 1.0, "flushes failed while Redis was down");
        tokio::task::block_in_place(|| redis.restart());
        let oks = app.client.metric(FLUSH_OK).await;
        app.wait_metric_above(FLUSH_OK, oks, 15).await;
    }
    load.wait_accepted(3_000).await;
    let ledger = load.stop().await;
    app.wait_caught_up(60).await;
    app.stop().await;

    assert!(ledger.accepted() > 9_000, "only {} events accepted", ledger.accepted());
    assert!(ledger.refused_requests.load(std::sync::atomic::Ordering::Relaxed) >= 40);
    assert_redis_holds(&redis.url(), &[&ledger]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_longer_than_the_response_timeout_never_count_twice() {
    let redis = RedisServer::start();
    let app = app_on(&redis, &[]).await;
    let load = Load::start(&app.client, 3);
    // Flushing as usual first: the first flush also opens the journal, which on a
    // loaded box can take long enough for a stall to end before any script is sent.
    app.wait_metric_above(FLUSH_OK, 0.0, 30).await;

    for _ in 0..3 {
        load.wait_accepted(1_000).await;
        stall_until_a_flush_fails(&app, &redis).await;
        let oks = app.client.metric(FLUSH_OK).await;
        app.wait_metric_above(FLUSH_OK, oks, 15).await;
    }
    let duplicates = app.client.metric(FLUSH_DUPLICATE).await;
    let ledger = load.stop().await;
    app.wait_caught_up(60).await;
    app.stop().await;

    assert!(duplicates >= 1.0, "no retry was recognised as a duplicate");
    assert_redis_holds(&redis.url(), &[&ledger]);
}

/// Stalls Redis for longer than a store call's bound (3.5 s, a 2 s response timeout
/// within), as often as it takes for a flush to fail. The scripts sent in a stall's
/// first seconds time out and their batch fails, while Redis keeps them and runs them
/// when it wakes, before the batch's retry on the same connection: answers lost after
/// the script ran, the retry a duplicate. The flusher sends every 100 ms, yet on a
/// loaded box it may be busy elsewhere (a drain, its journal) through a whole stall:
/// that stall proves nothing, and another one follows.
async fn stall_until_a_flush_fails(app: &TestApp, redis: &RedisServer) {
    let errors = app.client.metric(FLUSH_ERROR).await;
    for _ in 0..4 {
        let stall = redis.stall_from_now(5.0);
        tokio::task::block_in_place(|| stall.join()).expect("stall ends");
        if eventually(10, || async { app.client.metric(FLUSH_ERROR).await > errors }).await {
            return;
        }
    }
    panic!("no flush failed through four stalls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_an_outage_answer_from_the_last_known_totals() {
    let mut redis = RedisServer::start();
    let app = app_on(&redis, &[]).await;
    for _ in 0..3 {
        app.client.view("seen").await;
    }
    assert!(eventually(10, || async { app.client.metric(FLUSH_OK).await >= 1.0 }).await);
    assert_eq!(app.client.views("seen").await, 3);

    redis.kill();
    app.client.view("seen").await;
    let never_read = app.client.get("/v1/articles/never-read").await;
    let ready = app.client.get("/readyz").await;

    assert_eq!(app.client.views("seen").await, 4);
    assert_eq!(never_read.status, 503);
    assert_eq!(never_read.error_code(), "store_unavailable");
    assert_eq!(ready.status, 200, "{}", ready.text());
    tokio::task::block_in_place(|| redis.restart());
    app.stop().await;
    assert_eq!(redis.stored("seen", "views").as_deref(), Some("4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_stays_readable_while_its_batch_waits_for_redis() {
    let mut redis = RedisServer::start();
    let app = app_on(&redis, &[]).await;
    app.client.view("waiting").await;
    assert!(eventually(10, || async { app.client.metric(FLUSH_OK).await >= 1.0 }).await);
    assert_eq!(app.client.views("waiting").await, 1);

    redis.kill();
    let r = app
        .client
        .post_events(r#"{"type":"view","article":"waiting","section":"politics"}"#)
        .await;
    assert_eq!(r.status, 202);
    // Two failed attempts to land the batch: the counter has meanwhile forgotten the
    // metadata of an article idle for an interval; the queued batch still holds it.
    let errors = app.client.metric(FLUSH_ERROR).await;
    app.wait_metric_above(FLUSH_ERROR, errors + 1.0, 30).await;
    let read = app.client.article("waiting").await;

    assert_eq!(
        (read["views"].as_u64(), read["section"].as_str()),
        (Some(2), Some("politics")),
        "{read}"
    );
    tokio::task::block_in_place(|| redis.restart());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_keys_beyond_the_capacity_get_503_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let app = app_on(&redis, &["--max-pending-keys", "2"]).await;
    redis.kill();

    app.client.view("one").await;
    app.client.view("two").await;
    let third = app.client.post_events(r#"{"type":"view","article":"three"}"#).await;
    app.client.view("one").await;

    assert_eq!(third.status, 503);
    assert_eq!(third.error_code(), "capacity_exhausted");
    assert_eq!(app.client.get("/readyz").await.status, 503);
    tokio::task::block_in_place(|| redis.restart());
    app.stop().await;
    assert_eq!(redis.stored("one", "views").as_deref(), Some("2"));
    assert_eq!(redis.stored("three", "views"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_up_follows_redis_even_without_traffic() {
    let mut redis = RedisServer::start();
    let app = app_on(&redis, &[]).await;
    let store_up = || async { app.client.metric("viewcounter_store_up").await };
    assert!(eventually(10, || async { store_up().await == 1.0 }).await);

    redis.kill();
    assert!(eventually(10, || async { store_up().await == 0.0 }).await);

    tokio::task::block_in_place(|| redis.restart());
    assert!(eventually(10, || async { store_up().await == 1.0 }).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_does_not_keep_readers_waiting() {
    let redis = RedisServer::start();
    let app = app_on(&redis, &[]).await;
    app.client.view("hot").await;
    assert!(eventually(10, || async { app.client.metric(FLUSH_OK).await >= 1.0 }).await);
    assert_eq!(app.client.views("hot").await, 1);

    // A stall far longer than the 500 ms read timeout, so the bound below tells "gave up
    // on Redis" from "waited for it" even on a loaded box.
    redis.stall(12.0);
    // redis-cli needs a moment to start and send DEBUG SLEEP.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let views = app.client.views("hot").await;

    assert_eq!(views, 1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "the read waited for the stall: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_of_several_chunks_applied_through_a_stall_lands_exactly_once() {
    let redis = RedisServer::start();
    let store = Store::open_redis(&redis.url(), "vc").unwrap();
    // Three batches and a bit: the batches are in flight together.
    let n = 3 * store.batch_articles() + 7;
    let map = Arc::new(CounterMap::new(2 * n, Networks::default()));
    let metrics = Metrics::new();
    let in_flight = Arc::new(InFlight::default());
    let dir = tempfile::tempdir().unwrap();
    let mut flusher = Flusher::new(
        map.clone(),
        store,
        metrics.clone(),
        in_flight.clone(),
        FlushSettings {
            interval: Duration::from_millis(100),
            ..FlushSettings::new(dir.path().to_path_buf(), "stalled".into())
        },
    );

    // A first flush loads the script, so the stalled commands can run.
    record_view_and_share(&map, "warm-up");
    flusher.flush_once().await;
    assert!(in_flight.is_empty());
    (0..n).for_each(|i| record_view_and_share(&map, &format!("chunked-{i}")));

    // Longer than a store call's bound (3.5 s): the scripts sent in the stall's first
    // 4.5 s time out (a drain on a loaded box may take seconds to send its first), yet
    // Redis runs every command queued behind the sleep once it wakes, before the
    // retries sent on the same connection. Sent before the drain, so the drain's first
    // scripts wait for it.
    let stall = redis.stall_from_now(8.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    flusher.flush_once().await;
    while !in_flight.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        flusher.flush_once().await;
    }
    stall.join().expect("stall ends");

    assert!(in_flight.is_empty(), "every batch acknowledged in the end");
    let failed = metrics.flush_batches.with_label_values(&["error"]).get();
    let duplicates = metrics.flush_batches.with_label_values(&["duplicate"]).get();
    assert!(
        failed >= 1 && duplicates >= 1,
        "the stall lost answers: {failed} failed, {duplicates} duplicates"
    );
    let keys = Keys::new("vc");
    let mut fields = 0;
    for p in 0..PARTITIONS {
        let counts: BTreeMap<String, u64> = redis::cmd("HGETALL")
            .arg(keys.counts(Partition::from_index(p)))
            .query(&mut redis::Client::open(redis.url()).unwrap().get_connection().unwrap())
            .unwrap();
        assert!(counts.values().all(|v| *v == 1), "partition {p}: {counts:?}");
        fields += counts.len();
    }
    assert_eq!(fields, 2 * n + 2, "one view and one share of every article");
}

fn record_view_and_share(map: &CounterMap, article: &str) {
    let share = Counter::Share(Networks::default().find("telegram").unwrap());
    for counter in [Counter::View, share] {
        map.record(&Event::new(article, counter).unwrap());
    }
}
