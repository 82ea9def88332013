//! The Redis backend called directly (no HTTP) against a real redis-server: the
//! exactly-once record, partial retries, the script cache, admin writes, and what a
//! flush costs in Redis commands.

use crate::support as common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::RedisServer;
use viewcounter::counts::Counts;
use viewcounter::event::{ArticleId, Meta, Networks};
use viewcounter::store::redis::keys::{Keys, Partition};
use viewcounter::store::series::Step;
use viewcounter::store::{Applied, ArticleDelta, Batch, BatchId, RedisStore, Store, StoreError};

/// A store over `redis`. Reads get 10 s, not the production 500 ms: on a loaded 2-core
/// box a large read can take longer than that, and these tests are about what is
/// written, not about how soon a read gives up.
fn store(redis: &RedisServer) -> Store {
    let redis = RedisStore::open(&redis.url(), "vc").unwrap();
    Store::Redis(redis.with_read_timeout(Duration::from_secs(10)))
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
        counts: Counts::new(views, shares.iter().copied()),
        meta: Meta::default(),
        visitors: Vec::new(),
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

/// Batch `seq` of run `run`: one view of article `a`.
fn one_view(run: &str, seq: u64) -> Batch {
    batch(id(run, seq, 0), vec![delta("a", 1, &[])])
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
    assert_eq!(counts, [Counts::new(3, [("telegram", 2)])]);
}

#[tokio::test]
async fn batches_of_a_run_land_in_any_order_each_once() {
    let redis = RedisServer::start();
    let store = store(&redis);
    // The last batch is in the record's second segment.
    let seqs = [2, 1, 65_536 + 3];
    let batches: Vec<Batch> = seqs
        .iter()
        .map(|&seq| batch(id("run", seq, 0), vec![delta("a", seq, &[])]))
        .collect();

    for b in &batches {
        assert_eq!(store.apply(b).await.unwrap(), Applied::Applied, "{}", b.id);
    }
    for b in batches.iter().rev() {
        assert_eq!(store.apply(b).await.unwrap(), Applied::Duplicate, "{}", b.id);
    }
    assert_eq!(views(&store, "a").await, seqs.iter().sum::<u64>());
}

#[tokio::test]
async fn runs_keep_separate_records() {
    let redis = RedisServer::start();
    let store = store(&redis);

    store.apply(&one_view("run-a", 5)).await.unwrap();
    let other = store.apply(&one_view("run-b", 1)).await;

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
    store.apply(&one_view("run", 1)).await.unwrap();

    assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]).as_deref(), Some("OK"));
    let outcome = store.apply(&one_view("run", 2)).await;

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

    let totals = Counts::new(479, [("telegram", 5)]);
    store.set(&a, &totals).await.unwrap();
    assert_eq!(store.counts(std::slice::from_ref(&a)).await.unwrap(), [totals]);
    assert_eq!(
        redis_store.meta(&a).await.unwrap().section.as_deref(),
        Some("analytics")
    );

    store.delete(&a).await.unwrap();
    assert_eq!(
        store.counts(std::slice::from_ref(&a)).await.unwrap(),
        [Counts::default()]
    );
    assert_eq!(redis_store.meta(&a).await.unwrap(), Meta::default());
}

#[tokio::test]
async fn unsigned_metadata_fills_only_fields_not_stored_and_signed_metadata_replaces() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let mut first = delta("a", 1, &[]);
    first.meta.section = Some("sport".into());
    let mut second = delta("a", 1, &[]);
    second.meta.section = Some("casino".into());
    second.meta.lang = Some("az".into());
    let mut signed = delta("a", 1, &[]);
    signed.meta.section = Some("politics".into());
    signed.meta.signed = true;

    store.apply(&batch(id("run", 1, 0), vec![first])).await.unwrap();
    store.apply(&batch(id("run", 2, 0), vec![second])).await.unwrap();
    let Store::Redis(s) = &store else { unreachable!() };
    let a = ArticleId::parse("a").unwrap();
    let meta = s.meta(&a).await.unwrap();
    assert_eq!(
        (meta.section.as_deref(), meta.lang.as_deref()),
        (Some("sport"), Some("az"))
    );

    store.apply(&batch(id("run", 3, 0), vec![signed])).await.unwrap();
    assert_eq!(s.meta(&a).await.unwrap().section.as_deref(), Some("politics"));
}

#[tokio::test]
async fn a_dead_redis_fails_a_call_quickly() {
    let mut redis = RedisServer::start();
    let store = store(&redis);
    store.ping().await.unwrap();
    redis.kill();

    let started = Instant::now();
    let outcome = store.apply(&one_view("run", 1)).await;

    assert!(matches!(outcome, Err(StoreError::Redis(_))), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_stalled_redis_is_a_timeout_not_a_refusal() {
    let redis = RedisServer::start();
    let store = Store::Redis(
        RedisStore::open(&redis.url(), "vc")
            .unwrap()
            .with_read_timeout(Duration::from_millis(300)),
    );
    store.ping().await.unwrap();
    redis.stall(5.0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let outcome = store.counts(&[ArticleId::parse("a").unwrap()]).await;

    assert!(matches!(outcome, Err(StoreError::Timeout(_))), "{outcome:?}");
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
async fn a_flush_piece_costs_one_hmget_and_one_hset_of_the_counts_and_of_each_series() {
    let redis = RedisServer::start();
    let store = store(&redis);
    // Warm up: the first flush after a Redis start also loads the script.
    store.apply(&one_view("run", 1)).await.unwrap();
    // 2,000 articles, each read 50 times and shared twice in one interval.
    let articles: Vec<ArticleDelta> = (0..2_000)
        .map(|i| delta(&format!("art-{i}"), 50, &[("telegram", 2)]))
        .collect();
    let events = 2_000 * 52;
    assert_eq!(redis.cli(&["CONFIG", "RESETSTAT"]).as_deref(), Some("OK"));

    // Flushed now, so the hour and day series are written too.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let b = Batch {
        flushed_at_ms: now.as_millis() as u64,
        ..batch(id("run", 2, 0), articles)
    };
    store.apply(&b).await.unwrap();

    let calls = command_calls(&redis);
    assert_eq!(calls["evalsha"], 64, "one script per partition");
    assert_eq!(
        calls["hmget"],
        3 * 64,
        "one read of the partition's counters, its hour and its day"
    );
    assert_eq!(calls["hset"], 3 * 64, "one write of each, and no metadata");
    assert!(!calls.contains_key("sadd"), "no metadata, no filter values: {calls:?}");
    assert!(!calls.contains_key("hincrby"), "{calls:?}");
    let total: u64 = calls
        .iter()
        .filter(|(c, _)| !c.starts_with("config"))
        .map(|(_, n)| n)
        .sum();
    assert!(events / total >= 20, "{events} events cost {total} commands: {calls:?}");
}

#[tokio::test]
async fn a_piece_whose_counter_holds_no_number_fails_and_writes_nothing() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let counts = Keys::new("vc").counts(Partition::of("a"));
    redis.cli(&["HSET", &counts, "a:views", "not-a-number"]);
    let b = batch(id("run", 1, 0), vec![delta("a", 1, &[("x", 1)])]);

    assert!(store.apply(&b).await.is_err());
    assert_eq!(redis.stored("a", "share:x"), None, "nothing of the piece was written");

    redis.cli(&["HSET", &counts, "a:views", "5"]);
    assert_eq!(
        store.apply(&b).await.unwrap(),
        Applied::Applied,
        "the failed piece was not recorded"
    );
    assert_eq!(views(&store, "a").await, 6);
}

#[tokio::test]
async fn a_piece_larger_than_a_lua_unpack_is_applied_whole() {
    let redis = RedisServer::start();
    // Reading 5,000 articles back can take longer than the API's 500 ms on a loaded box.
    let store = Store::Redis(
        RedisStore::open(&redis.url(), "vc")
            .unwrap()
            .with_read_timeout(Duration::from_secs(10)),
    );
    // 5,000 articles of one partition, each with two counters and two meta fields:
    // 10,000 fields per HMGET/HSET, past Lua's 8,000 values per unpack().
    let p = Partition::of("0");
    let ids: Vec<String> = (0..)
        .map(|i| i.to_string())
        .filter(|a| Partition::of(a) == p)
        .take(5_000)
        .collect();
    let articles = ids
        .iter()
        .map(|a| ArticleDelta {
            meta: Meta {
                section: Some("news".into()),
                lang: Some("en".into()),
                ..Meta::default()
            },
            ..delta(a, 2, &[("telegram", 1)])
        })
        .collect();

    // Flushed now: the hour and day series get 10,000 fields each too.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let b = Batch {
        flushed_at_ms: now.as_millis() as u64,
        ..batch(id("run", 1, 0), articles)
    };
    assert_eq!(store.apply(&b).await.unwrap(), Applied::Applied);

    let all: Vec<ArticleId> = ids.iter().map(|a| ArticleId::parse(a).unwrap()).collect();
    let counts = store.counts(&all).await.unwrap();
    assert!(counts.iter().all(|c| c.views == 2 && c.share("telegram") == 1));
    let meta = Keys::new("vc").meta(p);
    assert_eq!(redis.cli(&["HLEN", &meta]).as_deref(), Some("10000"));
    let hour = Keys::new("vc").series(p, Step::Hour, Step::Hour.bucket(b.flushed_at_ms));
    assert_eq!(redis.cli(&["HLEN", &hour]).as_deref(), Some("10000"));
}

#[tokio::test]
async fn a_share_network_named_views_is_not_the_views_counter() {
    let redis = RedisServer::start();
    let networks = Networks::new(["views", "x"]).unwrap();
    let store = Store::Redis(RedisStore::open(&redis.url(), "vc").unwrap().with_networks(networks));
    let a = ArticleId::parse("a").unwrap();

    store
        .apply(&batch(id("run", 1, 0), vec![delta("a", 1, &[("views", 2)])]))
        .await
        .unwrap();

    assert_eq!(store.counts(&[a]).await.unwrap(), [Counts::new(1, [("views", 2)])]);
}
