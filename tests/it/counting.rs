//! The counter map and the flush against models: a property test (random streams
//! give exactly the counts of a plain HashMap, across flushes into the embedded
//! store), concurrency tests (threads recording while the flusher drains; readers
//! while drains settle into the flusher's queue) and reads through the service while
//! drains of several chunks are flushed, on each store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::support::{self as common, Backend, RedisServer, TestApp};
use proptest::prelude::*;
use viewcounter::counter::{CounterMap, VisitorMarks};
use viewcounter::counts::Counts;
use viewcounter::event::{ArticleId, Counter, Event, Networks};
use viewcounter::flusher::{InFlight, Unacked};
use viewcounter::store::{Batch, BatchId, EmbeddedStore};

const ARTICLES: [&str; 5] = ["a", "b", "c.1", "d_2", "e-3"];

#[derive(Debug, Clone)]
enum Step {
    Record { article: usize, counter: Option<u8> },
    Flush,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..ARTICLES.len(), proptest::option::of(0u8..12)).prop_map(|(article, counter)| Step::Record { article, counter }),
        1 => Just(Step::Flush),
    ]
}

fn event(article: usize, counter: Option<u8>) -> Event<'static> {
    Event::new(ARTICLES[article], counter.map_or(Counter::View, Counter::Share))
        .unwrap()
        .with_section("news")
}

fn batch(seq: u64, map: &CounterMap) -> Batch {
    Batch {
        id: BatchId {
            instance: "test".into(),
            epoch_ms: 1,
            seq,
            chunk: 0,
        },
        flushed_at_ms: 1,
        articles: map.drain(),
    }
}

fn model_counts(model: &HashMap<(usize, Option<u8>), u64>, networks: &Networks, article: usize) -> Counts {
    let mut c = Counts::default();
    for ((a, counter), n) in model {
        if *a != article {
            continue;
        }
        match counter {
            None => c.views += n,
            Some(i) => c.add_share(networks.name(*i), *n),
        }
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_streams_give_the_counts_of_a_hashmap_across_flushes(steps in proptest::collection::vec(step(), 1..300)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let networks = Networks::default();
        let map = CounterMap::new(1_000, networks.clone());
        let mut model: HashMap<(usize, Option<u8>), u64> = HashMap::new();
        let mut seq = 0;
        for s in steps.iter().chain(std::iter::once(&Step::Flush)) {
            match s {
                Step::Record { article, counter } => {
                    map.record_all(&[event(*article, *counter)]).unwrap();
                    *model.entry((*article, *counter)).or_default() += 1;
                }
                Step::Flush => {
                    seq += 1;
                    rt.block_on(store.apply(&batch(seq, &map))).unwrap();
                }
            }
        }
        let ids: Vec<ArticleId> = ARTICLES.iter().map(|a| ArticleId::parse(a).unwrap()).collect();
        let stored = rt.block_on(store.counts(&ids)).unwrap();
        for (i, got) in stored.into_iter().enumerate() {
            prop_assert_eq!(got, model_counts(&model, &networks, i));
        }
        prop_assert!(map.drain().is_empty());
    }
}

#[test]
fn a_replayed_batch_is_applied_once() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let map = CounterMap::new(10, Networks::default());
    map.record_all(&[event(0, None), event(0, None)]).unwrap();
    let b = batch(1, &map);
    use viewcounter::store::Applied;
    assert_eq!(rt.block_on(store.apply(&b)).unwrap(), Applied::Applied);
    assert_eq!(rt.block_on(store.apply(&b)).unwrap(), Applied::Duplicate);
    let got = rt.block_on(store.counts(&[ArticleId::parse("a").unwrap()])).unwrap();
    assert_eq!(got[0].views, 2);
}

#[test]
fn idle_keys_leave_the_map_and_free_capacity() {
    let map = CounterMap::new(2, Networks::default());
    map.record_all(&[event(0, None), event(1, None)]).unwrap();
    assert!(map.record_all(&[event(2, None)]).is_err(), "full");
    assert_eq!(map.drain().len(), 2);
    assert_eq!(map.len(), 2, "keys just drained stay for one interval");
    assert!(map.drain().is_empty());
    assert_eq!(map.len(), 0, "keys idle for a whole interval are removed");
    map.record_all(&[event(2, None)]).unwrap();
}

#[test]
fn threads_recording_while_the_flusher_drains_lose_nothing() {
    const THREADS: usize = 4;
    const PER_THREAD: u64 = 200_000;
    let map = Arc::new(CounterMap::new(1_000_000, Networks::default()));
    let done = Arc::new(AtomicBool::new(false));
    let drainer = {
        let (map, done) = (map.clone(), done.clone());
        std::thread::spawn(move || {
            let mut total = 0u64;
            let mut drains = 0u64;
            while !done.load(Ordering::SeqCst) {
                total += map.drain().iter().map(|d| d.counts.events()).sum::<u64>();
                drains += 1;
            }
            (total, drains)
        })
    };
    // Many keys, each touched in bursts, so idle keys are removed while others race.
    let articles: Arc<Vec<String>> = Arc::new((0..2_000).map(|i| format!("art-{i}")).collect());
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (map, articles) = (map.clone(), articles.clone());
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let article = articles[((i / 64) as usize * 7 + t) % articles.len()].as_str();
                    let counter = if i % 7 == 0 {
                        Counter::Share((i % 12) as u8)
                    } else {
                        Counter::View
                    };
                    map.record(&Event::new(article, counter).unwrap());
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let (drained, drains) = drainer.join().unwrap();
    let rest: u64 = map.drain().iter().map(|d| d.counts.events()).sum();
    assert!(drains > 10, "the flusher drained repeatedly ({drains})");
    assert_eq!(drained + rest, THREADS as u64 * PER_THREAD);
}

#[test]
fn metadata_reaches_a_batch_when_it_changes_not_every_flush() {
    let map = CounterMap::new(10, Networks::default());
    let with_section = |s: &'static str| Event::view("m").with_section(s);
    map.record(&with_section("news"));
    assert_eq!(map.drain()[0].meta.section.as_deref(), Some("news"));
    map.record(&with_section("news"));
    let d = map.drain();
    assert_eq!(d[0].counts.views, 1);
    assert!(d[0].meta.is_empty(), "unchanged metadata is not sent again");
    map.record(&with_section("sport"));
    assert!(
        map.drain()[0].meta.is_empty(),
        "an unsigned event cannot change a section already given"
    );
    map.record(&with_section("sport").signed());
    let d = map.drain();
    assert_eq!((d[0].meta.section.as_deref(), d[0].meta.signed), (Some("sport"), true));
}

/// One drain as the flusher makes it: every pending delta copied, cut into chunks of
/// `chunk` articles, each queued while its deltas leave the map.
fn drain_into(map: &CounterMap, in_flight: &InFlight, seq: u64, chunk: usize) {
    let drained = map.copy_pending(VisitorMarks::Keep);
    for (i, articles) in drained.chunks(chunk).enumerate() {
        let batch = Batch {
            id: BatchId {
                instance: "test".into(),
                epoch_ms: 1,
                seq: seq * 1_000 + i as u64,
                chunk: i as u32,
            },
            flushed_at_ms: 1,
            articles: articles.to_vec(),
        };
        let u = Unacked {
            batch: Arc::new(batch),
            spill_file: None,
            replayed: false,
        };
        in_flight.settle_into_queue(u, |deltas| map.settle(deltas));
    }
}

#[test]
fn reads_racing_drains_see_every_count_once_pending_or_queued() {
    const ARTICLES: usize = 4_000;
    const ROUNDS: u64 = 8;
    let map = Arc::new(CounterMap::new(1_000_000, Networks::default()));
    let in_flight = Arc::new(InFlight::default());
    let names: Arc<Vec<String>> = Arc::new((0..ARTICLES).map(|i| format!("r-{i:05}")).collect());
    // Rounds of recording begun and finished: a read sees between `finished` (read
    // before) and `begun` (read after) views of every article.
    let (begun, finished) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (map, in_flight, names) = (map.clone(), in_flight.clone(), names.clone());
            let (begun, finished, done) = (begun.clone(), finished.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ r;
                let mut reads = 0u64;
                while !done.load(Ordering::SeqCst) {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let (a, b) = ((seed >> 20) as usize % ARTICLES, (seed >> 40) as usize % ARTICLES);
                    let ids = [names[a].as_str(), names[b].as_str(), names[a].as_str()];
                    let low = finished.load(Ordering::SeqCst);
                    let view = in_flight.view_with(&ids, || ids.map(|id| map.pending(id)));
                    let high = begun.load(Ordering::SeqCst);
                    for (id, pending) in ids.iter().zip(view.also) {
                        let queued: u64 = view
                            .batches
                            .iter()
                            .filter_map(|b| b.get(id))
                            .map(|d| d.counts.views)
                            .sum();
                        let seen = pending.views + queued;
                        assert!(
                            (low..=high).contains(&seen),
                            "{id}: {seen} views seen ({} pending, {queued} queued), {low} to {high} recorded",
                            pending.views
                        );
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for round in 1..=ROUNDS {
        begun.store(round, Ordering::SeqCst);
        for name in names.iter() {
            map.record(&Event::new(name, Counter::View).unwrap());
        }
        finished.store(round, Ordering::SeqCst);
        // Chunks of 700: groups of every size, and chunks that end mid-group.
        drain_into(&map, &in_flight, round, 700);
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        assert!(r.join().unwrap() > 0, "the reader read");
    }
    let queued: u64 = in_flight.snapshot().iter().map(|u| u.batch.events()).sum();
    assert_eq!(queued, ROUNDS * ARTICLES as u64, "every view queued once");
}

/// Fill articles per round: over two chunks of a drain (10,000 articles each on the
/// embedded store, 4,096 on Redis).
const FILL: usize = 12_000;
/// Watched articles per round, spread through the fill in sort order.
const WATCHED: usize = 60;

/// `k<round>-<i>`, and after every 200th of them a watched `k<round>-<i>w`, which gets
/// `i % 4 + 1` views and `i % 3` shares on x.
fn watched(round: usize, i: usize) -> (String, u64, u64) {
    let n = i * FILL / WATCHED;
    (format!("k{round}-{n:05}w"), (i % 4 + 1) as u64, (i % 3) as u64)
}

async fn post_round(app: &TestApp, round: usize) {
    let mut lines: Vec<String> = (0..FILL)
        .map(|i| format!("{{\"type\":\"view\",\"article\":\"k{round}-{i:05}\"}}"))
        .collect();
    for i in 0..WATCHED {
        let (article, views, shares) = watched(round, i);
        for _ in 0..views {
            lines.push(format!("{{\"type\":\"view\",\"article\":\"{article}\"}}"));
        }
        for _ in 0..shares {
            lines.push(format!(
                "{{\"type\":\"share\",\"article\":\"{article}\",\"network\":\"x\"}}"
            ));
        }
    }
    for body in lines.chunks(1_000) {
        let r = app.client.post_ndjson(body.join("\n")).await;
        assert_eq!(r.status, http::StatusCode::ACCEPTED, "{}", r.text());
    }
}

/// Batches the store acknowledged, applied now or found applied before.
async fn acknowledged(app: &TestApp) -> f64 {
    app.client.metric(common::FLUSH_OK).await + app.client.metric(common::FLUSH_DUPLICATE).await
}

/// Reads every watched article of `round` (each read must give exactly what was
/// posted) until the round's drain has landed in the store.
async fn read_until_landed(app: &TestApp, round: usize, landed_before: f64) -> u64 {
    let ids: Vec<String> = (0..WATCHED).map(|i| watched(round, i).0).collect();
    let path = format!("/v1/articles?ids={}", ids.join(","));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let mut reads = 0;
    loop {
        let r = app.client.get(&path).await;
        assert_eq!(r.status, http::StatusCode::OK, "{}", r.text());
        let articles = r.json()["articles"].as_array().expect("articles").clone();
        for (i, got) in articles.iter().enumerate() {
            let (article, views, shares) = watched(round, i);
            assert_eq!(got["article"], article.as_str());
            assert_eq!(got["views"], views, "{article}, read {reads}: {got}");
            assert_eq!(got["shares_total"], shares, "{article}, read {reads}: {got}");
        }
        let single = &watched(round, reads as usize % WATCHED);
        assert_eq!(
            app.client.views(&single.0).await,
            single.1,
            "{}, read {reads}",
            single.0
        );
        reads += 1;
        // Two chunks acknowledged since the round began (a retry after a timeout on a
        // loaded box is acknowledged as a duplicate) and nothing left unacknowledged.
        let landed = acknowledged(app).await >= landed_before + 2.0
            && app.client.metric("viewcounter_unacked_events").await == 0.0;
        if landed && reads >= 5 {
            return reads;
        }
        assert!(std::time::Instant::now() < deadline, "round {round} did not land");
    }
}

/// Reads through the service while drains of several chunks are copied, queued,
/// journaled and applied: every read of an article gives exactly the views and
/// shares posted (pending, queued or stored, each counted once). Four readers at once,
/// so that reads keep overlapping a batch joining the queue: such a read is counted
/// exactly only because it reads again, as often as the queue changed under it.
async fn reads_during_large_drains_count_each_event_once(backend: Backend) {
    let _heavy = common::one_heavy_test_at_a_time().await;
    // Reads that outlast the Redis read timeout answer from the last known totals, which
    // are behind by any batch acknowledged since (never ahead): the exact count tested
    // here needs the store's answer, so the four readers on a loaded machine must not
    // fall back.
    let app = TestApp::start_on(&backend, &["--flush-interval", "1s", "--redis-read-timeout", "60s"]).await;
    for round in 0..3 {
        let landed_before = acknowledged(&app).await;
        post_round(&app, round).await;
        let readers = (0..4).map(|_| read_until_landed(&app, round, landed_before));
        futures_util::future::join_all(readers).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_large_drains_count_each_event_once_embedded() {
    reads_during_large_drains_count_each_event_once(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_large_drains_count_each_event_once_on_redis() {
    let redis = RedisServer::start();
    reads_during_large_drains_count_each_event_once(Backend::Redis(redis.url())).await;
}

/// A store read names the queued batches its totals already hold, and only those: what
/// the read path (and its fallback, the last known totals) leaves out when it adds the
/// queued batches, so a batch applied but not yet acknowledged is counted once.
async fn a_read_names_the_queued_batches_its_totals_already_hold(store: viewcounter::store::Store) {
    use common::batches::{batch, views};
    let landed = Arc::new(batch(1, 1_000, views(&[("a", 2, "news"), ("b", 1, "news")])));
    let queued = Arc::new(batch(2, 2_000, views(&[("a", 3, "news")])));
    store.apply(&landed).await.unwrap();
    let ids = [ArticleId::parse("a").unwrap(), ArticleId::parse("c").unwrap()];
    let reads = store
        .article_reads(&ids, &[landed.clone(), queued.clone()])
        .await
        .unwrap();
    assert_eq!(reads[0].stored.views, 2);
    assert_eq!(reads[0].landed, std::slice::from_ref(&landed.id));
    assert!(reads[1].landed.is_empty(), "c is in no batch");
    let unacked = [landed, queued];
    let unapplied = viewcounter::store::unapplied_in(&ids[0], &unacked, &reads[0].landed);
    assert_eq!(unapplied.views, 3, "only the batch not applied yet is added");
}

#[tokio::test]
async fn a_read_names_the_queued_batches_its_totals_already_hold_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = viewcounter::store::Store::open_embedded(dir.path()).unwrap();
    a_read_names_the_queued_batches_its_totals_already_hold(store).await;
}

#[tokio::test]
async fn a_read_names_the_queued_batches_its_totals_already_hold_on_redis() {
    let redis = RedisServer::start();
    let store = viewcounter::store::Store::open_redis(&redis.url(), "vc").unwrap();
    a_read_names_the_queued_batches_its_totals_already_hold(store).await;
}

/// An admin PUT right after a beacon, while drains run back to back: a drain that
/// copied the beacon's view before the PUT took the article out of the map must land
/// before the PUT's totals, never after them (it would undo them by one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_put_is_never_undone_by_a_view_drained_before_it() {
    let app = TestApp::start(&["--admin-token", "t0ken", "--flush-interval", "10ms"]).await;
    let auth = [("authorization", "Bearer t0ken")];
    // Many other articles in each beacon's batch make every drain long enough for the
    // PUT to fall between its copy of the map and the queueing of its batches.
    let others: Vec<String> = (0..400)
        .map(|i| format!(r#"{{"type":"view","article":"o{i}"}}"#))
        .collect();
    for round in 0..150 {
        let article = format!("m{round}");
        let body = format!(r#"[{},{{"type":"view","article":"{article}"}}]"#, others.join(","));
        assert_eq!(app.client.post_events(&body).await.status, hyper::StatusCode::ACCEPTED);
        let path = format!("/v1/admin/articles/{article}");
        let r = app
            .client
            .send(hyper::Method::PUT, &path, &auth, r#"{"views": 100}"#)
            .await;
        assert_eq!(r.status, hyper::StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["views"], 100, "round {round}: the PUT's own answer");
    }
    app.wait_caught_up(60).await;
    for round in 0..150 {
        assert_eq!(app.client.views(&format!("m{round}")).await, 100, "round {round}");
    }
}
