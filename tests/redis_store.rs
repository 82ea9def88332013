//! The Redis backend called directly (no HTTP) against a real redis-server: the
//! exactly-once record, partial retries, the script cache, admin writes, and what a
//! flush costs in Redis commands.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::RedisServer;
use viewcounter::event::{ArticleId, Meta};
use viewcounter::store::keys::Partition;
use viewcounter::store::{Applied, ArticleDelta, Batch, BatchId, Store, StoredCounts};

fn store(redis: &RedisServer) -> Store {
    Store::open_redis(&redis.url(), "vc").unwrap()
}

fn id(instance: &str, seq: u64, chunk: u32) -> BatchId {
    BatchId {
        instance: instance.into(),
        epoch_ms: 1_700_000_000_000,
        seq,
        chunk,
    }
}

fn delta(article: &str, views: u64, shares: &[(&str, u64)]) -> ArticleDelta {
    ArticleDelta {
        article: ArticleId::parse(article).unwrap(),
        views,
        shares: shares.iter().map(|(n, k)| ((*n).into(), *k)).collect(),
        meta: Meta::default(),
    }
}

fn batch(id: BatchId, mut articles: Vec<ArticleDelta>) -> Batch {
    articles.sort_by(|a, b| a.article.cmp(&b.article));
    Batch {
        id,
        flushed_at_ms: 1_700_000_000_000,
        articles,
    }
}

async fn views(store: &Store, article: &str) -> u64 {
    store.counts(&[ArticleId::parse(article).unwrap()]).await.unwrap()[0].views
}

/// Two ids in different partitions.
fn two_partitions() -> (String, String) {
    let a = "alpha".to_string();
    let b = (0..)
        .map(|i| format!("beta-{i}"))
        .find(|b| Partition::of(b) != Partition::of(&a))
        .unwrap();
    (a, b)
}

#[tokio::test]
async fn a_batch_applied_twice_is_added_once() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let b = batch(id("run", 1, 0), vec![delta("a", 3, &[("telegram", 2)])]);

    assert_eq!(store.apply(&b).await.unwrap(), Applied::Applied);
    assert_eq!(store.apply(&b).await.unwrap(), Applied::Duplicate);

    let counts = store.counts(&[ArticleId::parse("a").unwrap()]).await.unwrap();
    let shares = BTreeMap::from([("telegram".to_string(), 2)]);
    assert_eq!(counts, [StoredCounts { views: 3, shares }]);
}

#[tokio::test]
async fn an_earlier_batch_of_a_run_is_a_duplicate_once_a_later_one_landed() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let first = batch(id("run", 1, 0), vec![delta("a", 1, &[])]);
    let second_chunk = batch(id("run", 1, 1), vec![delta("a", 2, &[])]);

    store.apply(&first).await.unwrap();
    store.apply(&second_chunk).await.unwrap();

    assert_eq!(store.apply(&first).await.unwrap(), Applied::Duplicate);
    assert_eq!(views(&store, "a").await, 3);
}

#[tokio::test]
async fn runs_keep_separate_records() {
    let redis = RedisServer::start();
    let store = store(&redis);

    store
        .apply(&batch(id("run-a", 5, 0), vec![delta("a", 1, &[])]))
        .await
        .unwrap();
    let other = store.apply(&batch(id("run-b", 1, 0), vec![delta("a", 1, &[])])).await;

    assert_eq!(other.unwrap(), Applied::Applied);
    assert_eq!(views(&store, "a").await, 2);
}

#[tokio::test]
async fn a_retry_after_part_of_a_batch_landed_adds_only_the_rest() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let (a, b) = two_partitions();
    // As if the piece of `a`'s partition had run and the answer to the rest was lost.
    store
        .apply(&batch(id("run", 1, 0), vec![delta(&a, 1, &[])]))
        .await
        .unwrap();

    let retry = batch(id("run", 1, 0), vec![delta(&a, 1, &[]), delta(&b, 1, &[])]);

    assert_eq!(store.apply(&retry).await.unwrap(), Applied::Partial);
    assert_eq!((views(&store, &a).await, views(&store, &b).await), (1, 1));
}

#[tokio::test]
async fn a_redis_that_forgot_the_script_gets_it_again() {
    let redis = RedisServer::start();
    let store = store(&redis);
    store
        .apply(&batch(id("run", 1, 0), vec![delta("a", 1, &[])]))
        .await
        .unwrap();

    assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]).as_deref(), Some("OK"));
    let outcome = store.apply(&batch(id("run", 2, 0), vec![delta("a", 1, &[])])).await;

    assert_eq!(outcome.unwrap(), Applied::Applied);
    assert_eq!(views(&store, "a").await, 2);
}

#[tokio::test]
async fn admin_set_replaces_totals_and_delete_forgets_counts_and_metadata() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let mut d = delta("a", 5, &[("x", 1), ("telegram", 4)]);
    d.meta.section = Some("analytics".into());
    d.meta.lang = Some("en".into());
    store.apply(&batch(id("run", 1, 0), vec![d])).await.unwrap();
    let a = ArticleId::parse("a").unwrap();
    let Store::Redis(redis_store) = &store else {
        unreachable!()
    };

    let totals = StoredCounts {
        views: 479,
        shares: BTreeMap::from([("telegram".to_string(), 5)]),
    };
    store.set(&a, &totals).await.unwrap();
    assert_eq!(store.counts(std::slice::from_ref(&a)).await.unwrap(), [totals]);
    assert_eq!(
        redis_store.meta(&a).await.unwrap().section.as_deref(),
        Some("analytics")
    );

    store.delete(&a).await.unwrap();
    assert_eq!(
        store.counts(std::slice::from_ref(&a)).await.unwrap(),
        [StoredCounts::default()]
    );
    assert_eq!(redis_store.meta(&a).await.unwrap(), Meta::default());
}

#[tokio::test]
async fn metadata_a_batch_does_not_give_is_kept() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let mut first = delta("a", 1, &[]);
    first.meta.section = Some("sport".into());
    first.meta.lang = Some("ru".into());
    let mut second = delta("a", 1, &[]);
    second.meta.lang = Some("az".into());

    store.apply(&batch(id("run", 1, 0), vec![first])).await.unwrap();
    store.apply(&batch(id("run", 2, 0), vec![second])).await.unwrap();

    let Store::Redis(s) = &store else { unreachable!() };
    let meta = s.meta(&ArticleId::parse("a").unwrap()).await.unwrap();
    assert_eq!(
        (meta.section.as_deref(), meta.lang.as_deref()),
        (Some("sport"), Some("az"))
    );
}

#[tokio::test]
async fn a_dead_redis_fails_a_call_quickly() {
    let mut redis = RedisServer::start();
    let store = store(&redis);
    store.ping().await.unwrap();
    redis.kill();

    let started = Instant::now();
    let outcome = store.apply(&batch(id("run", 1, 0), vec![delta("a", 1, &[])])).await;

    assert!(outcome.is_err());
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

fn command_calls(redis: &RedisServer) -> BTreeMap<String, u64> {
    let stats = redis.cli(&["INFO", "commandstats"]).unwrap();
    stats
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let calls = rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

#[tokio::test]
async fn a_flush_costs_one_hincrby_per_changed_counter() {
    let redis = RedisServer::start();
    let store = store(&redis);
    // Warm up: the first flush after a Redis start also loads the script.
    store
        .apply(&batch(id("run", 1, 0), vec![delta("a", 1, &[])]))
        .await
        .unwrap();
    // 2,000 articles, each read 50 times and shared twice in one interval.
    let articles: Vec<ArticleDelta> = (0..2_000)
        .map(|i| delta(&format!("art-{i}"), 50, &[("telegram", 2)]))
        .collect();
    let events = 2_000 * 52;
    assert_eq!(redis.cli(&["CONFIG", "RESETSTAT"]).as_deref(), Some("OK"));

    store.apply(&batch(id("run", 2, 0), articles)).await.unwrap();

    let calls = command_calls(&redis);
    assert_eq!(calls["hincrby"], 4_000);
    assert_eq!(calls["evalsha"], 64, "one script per partition");
    assert!(!calls.contains_key("hset"), "no metadata, no HSET");
    let total: u64 = calls
        .iter()
        .filter(|(c, _)| !c.starts_with("config"))
        .map(|(_, n)| n)
        .sum();
    assert!(events / total >= 20, "{events} events cost {total} commands: {calls:?}");
}
