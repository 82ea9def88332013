//! Top windows on the Redis store, with a controllable clock: buckets roll out of each
//! window without waiting, a reload (restart) rebuilds them, a late batch counts at its
//! apply time, bucket keys expire, and two instances sharing one Redis rank together.

use crate::support as common;

use std::sync::Arc;

use common::{batches, RedisServer, TestApp};
use http::StatusCode;
use serde_json::{json, Value};
use viewcounter::clock::{Clock, ManualClock};
use viewcounter::counts::Counts;
use viewcounter::event::{ArticleId, Meta, Networks};
use viewcounter::store::{ArticleDelta, Rankings, RedisStore};
use viewcounter::top::TopQuery;

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
/// A round start time (a multiple of a day), so bucket edges are easy to reason about.
const T0: u64 = 20_000 * DAY;

struct Harness {
    redis: RedisServer,
    clock: Arc<ManualClock>,
    store: RedisStore,
    seq: u64,
}

/// A store whose reads wait up to 10 s: on a loaded two-core box a refresh's reads
/// can take longer than the production 500 ms, which is load, not a failure.
fn open(url: &str, clock: Arc<ManualClock>) -> RedisStore {
    RedisStore::open_with_clock(url, "vc", clock)
        .unwrap()
        .with_read_timeout(std::time::Duration::from_secs(10))
}

impl Harness {
    async fn new() -> Harness {
        let redis = RedisServer::start();
        let clock = Arc::new(ManualClock::at(T0));
        let store = open(&redis.url(), clock.clone());
        store.load_top().await.unwrap();
        Harness {
            redis,
            clock,
            store,
            seq: 0,
        }
    }

    /// Another instance (or this one restarted) on the same Redis and clock.
    async fn reopen(&mut self) {
        self.store = open(&self.redis.url(), self.clock.clone());
        self.store.load_top().await.unwrap();
    }

    /// Moves time on, with the background task's step (fold, refresh or reload), which
    /// runs every few seconds in the service.
    async fn advance(&self, ms: u64) {
        self.clock.advance(ms);
        self.store.maintain_top().await.unwrap();
    }

    async fn views(&mut self, rows: &[(&str, u64, &str)]) {
        self.apply(batches::views(rows), self.clock.now_ms()).await;
    }

    async fn shares(&mut self, article: &str, shares: &[(&str, u64)]) {
        self.apply(vec![batches::shares(article, shares)], self.clock.now_ms())
            .await;
    }

    async fn apply(&mut self, articles: Vec<ArticleDelta>, flushed_at_ms: u64) {
        self.seq += 1;
        let batch = batches::batch(self.seq, flushed_at_ms, articles);
        viewcounter::store::Store::Redis(self.store.clone())
            .apply(&batch)
            .await
            .unwrap();
    }

    async fn top(&self, query: &str) -> Vec<(String, u64)> {
        ranking(&self.store, query).await
    }
}

/// `store`'s ranking for the `/v1/top` query string `query`, as (article, count).
async fn ranking(store: &RedisStore, query: &str) -> Vec<(String, u64)> {
    let q = TopQuery::parse(query, &Networks::default()).unwrap();
    let got = store.top(&q).await.unwrap();
    got.into_iter().map(|e| (e.article, e.count)).collect()
}

fn ranked(rows: &[(&str, u64)]) -> Vec<(String, u64)> {
    rows.iter().map(|(a, n)| (a.to_string(), *n)).collect()
}

#[tokio::test]
async fn every_window_holds_exactly_its_buckets_as_time_moves() {
    let mut h = Harness::new().await;
    h.views(&[("old", 5, "news")]).await;
    h.advance(20 * MIN).await;
    h.views(&[("mid", 3, "news")]).await;
    h.advance(14 * MIN).await;
    h.views(&[("new", 1, "news")]).await;

    // 34 minutes after "old": outside 15m, inside 1h.
    assert_eq!(h.top("window=15m").await, ranked(&[("mid", 3), ("new", 1)]));
    assert_eq!(h.top("window=1h").await, ranked(&[("old", 5), ("mid", 3), ("new", 1)]));
    h.advance(MIN).await;
    assert_eq!(
        h.top("window=15m").await,
        ranked(&[("new", 1)]),
        "mid rolled out of 15m"
    );

    h.advance(HOUR).await;
    assert_eq!(h.top("window=1h").await, ranked(&[]));
    assert_eq!(h.top("window=24h").await, ranked(&[("old", 5), ("mid", 3), ("new", 1)]));

    h.advance(DAY).await;
    assert_eq!(h.top("window=24h").await, ranked(&[]));
    assert_eq!(h.top("window=7d").await.len(), 3);

    h.advance(7 * DAY).await;
    assert_eq!(h.top("window=7d").await, ranked(&[]));
    assert_eq!(h.top("window=30d").await.len(), 3);

    h.advance(30 * DAY).await;
    assert_eq!(h.top("window=30d").await, ranked(&[]));
    assert_eq!(h.top("window=all").await, ranked(&[("old", 5), ("mid", 3), ("new", 1)]));
}

#[tokio::test]
async fn hour_windows_roll_hour_by_hour_without_a_reload() {
    let mut h = Harness::new().await;
    h.views(&[("a", 2, "news")]).await;
    h.advance(90 * MIN).await;
    h.views(&[("b", 1, "news")]).await;
    for _ in 0..22 {
        h.advance(HOUR).await;
    }
    // 23.5 h after "a", 22 h after "b".
    assert_eq!(h.top("window=24h").await, ranked(&[("a", 2), ("b", 1)]));
    h.advance(HOUR).await;
    assert_eq!(h.top("window=24h").await, ranked(&[("b", 1)]), "a's hour left 24h");
    assert_eq!(h.top("window=7d").await, ranked(&[("a", 2), ("b", 1)]));
}

#[tokio::test]
async fn ties_filters_and_shares_by_network_rank_as_on_the_embedded_store() {
    let mut h = Harness::new().await;
    h.views(&[("b", 2, "news"), ("a", 2, "news"), ("c", 7, "news"), ("d", 1, "news")])
        .await;
    assert_eq!(
        h.top("window=15m&limit=3").await,
        ranked(&[("c", 7), ("a", 2), ("b", 2)])
    );
    h.views(&[("x2", 4, "analytics"), ("x3", 6, "analytics")]).await;
    h.shares("x2", &[("telegram", 3), ("facebook", 1)]).await;
    h.shares("x3", &[("facebook", 5)]).await;
    assert_eq!(h.top("section=analytics").await, ranked(&[("x3", 6), ("x2", 4)]));
    assert_eq!(h.top("section=analytics&lang=ru").await, ranked(&[]));
    assert_eq!(h.top("metric=shares").await, ranked(&[("x3", 5), ("x2", 4)]));
    assert_eq!(h.top("metric=shares&network=telegram").await, ranked(&[("x2", 3)]));
}

#[tokio::test]
async fn windows_are_rebuilt_by_a_reload_and_match_the_incremental_ones() {
    let mut h = Harness::new().await;
    h.views(&[("r", 4, "news")]).await;
    h.advance(10 * MIN).await;
    h.views(&[("s", 2, "news")]).await;
    h.shares("s", &[("x", 1)]).await;
    let before: Vec<_> = futures_all(&h).await;
    h.reopen().await;
    assert_eq!(futures_all(&h).await, before);
    assert_eq!(h.top("window=15m").await, ranked(&[("r", 4), ("s", 2)]));
    h.advance(6 * MIN).await;
    h.reopen().await;
    assert_eq!(h.top("window=15m").await, ranked(&[("s", 2)]));
    assert_eq!(h.top("window=all").await, ranked(&[("r", 4), ("s", 2)]));
    assert_eq!(h.top("window=all&metric=shares").await, ranked(&[("s", 1)]));
}

async fn futures_all(h: &Harness) -> Vec<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for w in ["15m", "1h", "24h", "7d", "30d", "all"] {
        out.push(h.top(&format!("window={w}")).await);
    }
    out
}

#[tokio::test]
async fn a_late_batch_counts_at_its_apply_time_and_closed_buckets_never_change() {
    let mut h = Harness::new().await;
    h.advance(30 * MIN).await;
    let flushed_long_ago = h.clock.now_ms() - 20 * MIN;
    let late = ArticleDelta {
        article: ArticleId::parse("late").unwrap(),
        counts: Counts::of_views(3),
        meta: Meta::default(),
        visitors: Vec::new(),
    };
    h.apply(vec![late], flushed_long_ago).await;
    assert_eq!(
        h.top("window=15m").await,
        ranked(&[("late", 3)]),
        "dated now, not 20 min ago"
    );
    let minute = (h.clock.now_ms() / MIN).to_string();
    let key = format!("vc:{{{}}}:m:{minute}", partition_of("late"));
    assert_eq!(
        h.redis.cli(&["LRANGE", &key, "0", "-1"]).as_deref(),
        Some("late:views 3")
    );
}

#[tokio::test]
async fn bucket_keys_expire_and_a_delete_leaves_every_window() {
    let mut h = Harness::new().await;
    h.views(&[("gone", 8, "news"), ("kept", 1, "news")]).await;
    let p = partition_of("gone");
    let ttl = |key: String| -> i64 { h.redis.cli(&["TTL", &key]).unwrap().parse().unwrap() };
    let minute_ttl = ttl(format!("vc:{{{p}}}:m:{}", T0 / MIN));
    assert!((3 * 3600 - 60..=3 * 3600).contains(&minute_ttl), "{minute_ttl}");
    h.advance(3 * MIN).await;
    let hour_ttl = ttl(format!("vc:{{{p}}}:h:{}", T0 / HOUR));
    assert!(
        (31 * 86400 - 60..=31 * 86400).contains(&hour_ttl),
        "folded into its hour: {hour_ttl}"
    );

    h.store.delete(&ArticleId::parse("gone").unwrap()).await.unwrap();
    assert_eq!(h.top("window=1h").await, ranked(&[("kept", 1)]));
    assert_eq!(h.top("window=all").await, ranked(&[("kept", 1)]));
    h.advance(MIN).await;
    h.views(&[("gone", 2, "news")]).await;
    h.advance(20 * MIN).await;
    assert_eq!(h.top("window=1h").await, ranked(&[("gone", 2), ("kept", 1)]));
    assert_eq!(h.top("window=24h").await, ranked(&[("gone", 2), ("kept", 1)]));
    h.reopen().await;
    assert_eq!(
        h.top("window=1h").await,
        ranked(&[("gone", 2), ("kept", 1)]),
        "after a reload too"
    );
}

fn partition_of(article: &str) -> String {
    viewcounter::store::redis::keys::Partition::of(article).to_string()
}

async fn top_of(app: &TestApp, query: &str) -> Value {
    let r = app.client.get(&format!("/v1/top?{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_rank_every_event_of_both() {
    let redis = RedisServer::start();
    let one = TestApp::start_on(&common::Backend::Redis(redis.url()), &["--flush-interval", "50ms"]).await;
    let two = TestApp::start_on(&common::Backend::Redis(redis.url()), &["--flush-interval", "50ms"]).await;
    let view = |a: &str| json!({"type": "view", "article": a, "section": "news"});
    let batch = |rows: &[(&str, usize)]| {
        let events: Vec<Value> = rows
            .iter()
            .flat_map(|(a, n)| std::iter::repeat_n(view(a), *n))
            .collect();
        Value::Array(events).to_string()
    };
    assert_eq!(
        one.client.post_events(&batch(&[("p", 3), ("q", 1)])).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        two.client.post_events(&batch(&[("p", 2), ("r", 5)])).await.status,
        StatusCode::ACCEPTED
    );
    let want = json!([
        {"article": "p", "count": 5, "section": "news"},
        {"article": "r", "count": 5, "section": "news"},
        {"article": "q", "count": 1, "section": "news"}
    ]);
    for app in [&one, &two] {
        for window in ["15m", "24h", "all"] {
            let q = format!("window={window}");
            let seen = common::eventually(10, || async { top_of(app, &q).await["articles"] == want }).await;
            assert!(seen, "{window}: {}", top_of(app, &q).await);
        }
    }
}

#[tokio::test]
async fn an_admin_change_through_one_instance_reaches_the_windows_of_another() {
    let mut h = Harness::new().await;
    let other = RedisStore::open_with_clock(&h.redis.url(), "vc", h.clock.clone()).unwrap();
    other.load_top().await.unwrap();
    let top_of_other = |query: &'static str| ranking(&other, query);
    h.views(&[("edited", 5, "news"), ("retracted", 9, "news"), ("kept", 3, "news")])
        .await;
    h.clock.advance(1_000);
    assert_eq!(
        top_of_other("window=all").await,
        ranked(&[("retracted", 9), ("edited", 5), ("kept", 3)])
    );

    // Through this instance: a migration sets "edited" to 100, "retracted" is deleted;
    // a flush of 2 more views of "edited" lands after the change.
    let counts = Counts::of_views(100);
    h.store
        .set(&ArticleId::parse("edited").unwrap(), &counts)
        .await
        .unwrap();
    h.store.delete(&ArticleId::parse("retracted").unwrap()).await.unwrap();
    h.views(&[("edited", 2, "news")]).await;
    h.clock.advance(1_000);

    let expected = ranked(&[("edited", 102), ("kept", 3)]);
    assert_eq!(top_of_other("window=all").await, expected, "the other instance");
    assert_eq!(h.top("window=all").await, expected, "this instance");
    assert_eq!(
        top_of_other("window=1h").await,
        ranked(&[("edited", 7), ("kept", 3)]),
        "a delete leaves the rolling windows; a set changes only the all-time totals"
    );
    h.reopen().await;
    assert_eq!(h.top("window=all").await, expected, "a reload agrees");
}

#[tokio::test]
async fn an_admin_metadata_change_through_one_instance_reaches_the_rankings_of_another() {
    let mut h = Harness::new().await;
    let other = open(&h.redis.url(), h.clock.clone());
    other.load_top().await.unwrap();
    let top_of_other = |query: &'static str| {
        let other = other.clone();
        async move {
            other.maintain_top().await.unwrap();
            ranking(&other, query).await
        }
    };
    h.views(&[("moved", 5, "news"), ("stays", 3, "news")]).await;
    h.clock.advance(1_000);
    assert_eq!(
        top_of_other("window=all&section=news").await,
        ranked(&[("moved", 5), ("stays", 3)])
    );

    // An editor moves the article; it sees no view afterwards, so no flush carries it.
    let meta = viewcounter::event::Meta {
        section: Some("politics".into()),
        ..Default::default()
    };
    h.store
        .set_meta(&ArticleId::parse("moved").unwrap(), &meta)
        .await
        .unwrap();
    h.clock.advance(1_000);

    assert_eq!(
        top_of_other("window=all&section=politics").await,
        ranked(&[("moved", 5)])
    );
    assert_eq!(top_of_other("window=all&section=news").await, ranked(&[("stays", 3)]));
    assert_eq!(
        h.top("window=all&section=politics").await,
        ranked(&[("moved", 5)]),
        "this instance"
    );
}
