//! Criterion benches of the hot path and the flush: `record` (1 and 2 threads, 1k /
//! 100k / 1M distinct keys), a beacon's whole map work (count, metadata, visitor) over
//! 10k articles, the ingest edges (content type, the 202 body), parsing one event and a
//! batch of 100, draining 100k and 1M keys into a batch, applying a 10k-article batch
//! to the embedded store, and ranking a 100k-article window.
//!
//! Run: `cargo bench --bench hot_path` (figures in BENCHMARKS.md).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use viewcounter::counter::CounterMap;
use viewcounter::counts::Counts;
use viewcounter::event::{ArticleId, BotFilter, Event, Meta, Networks, RawEvent};
use viewcounter::http::ingest::{accepted, check_content_type, split_events};
use viewcounter::store::windows::{BucketSource, Windows};
use viewcounter::store::{ArticleDelta, Batch, BatchId, Store, StoreError};
use viewcounter::top::{Granularity, TopQuery};

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("article-{i:07}")).collect()
}

fn view(article: &str) -> Event<'_> {
    Event::view(article).with_section("analytics").with_lang("en")
}

fn filled(ids: &[String]) -> CounterMap {
    let map = CounterMap::new(2_000_000, Networks::default());
    for id in ids {
        map.record(&view(id));
    }
    map
}

fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    for n in [1_000, 100_000, 1_000_000] {
        let ids = ids(n);
        let map = filled(&ids);
        g.bench_with_input(BenchmarkId::new("1_thread", n), &n, |b, _| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 7919) % ids.len();
                map.record(black_box(&view(&ids[i])));
            })
        });
        let map = Arc::new(map);
        let ids = Arc::new(ids);
        g.bench_with_input(BenchmarkId::new("2_threads", n), &n, |b, _| {
            b.iter_custom(|iters| contended(&map, &ids, iters))
        });
    }
    g.finish();
}

/// Two threads record `iters` events each at once; the time is the wall time per event pair.
fn contended(map: &Arc<CounterMap>, ids: &Arc<Vec<String>>, iters: u64) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let (map, ids) = (map.clone(), ids.clone());
            std::thread::spawn(move || {
                let mut i = t * 31;
                for _ in 0..iters {
                    i = (i + 7919) % ids.len();
                    map.record(&view(&ids[i]));
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    start.elapsed()
}

/// What one beacon (a view with section and language) does to the maps, as
/// `POST /v1/events` does it: the count, the metadata check, the visitor mark; over
/// 10,000 articles already held (the wrk bench's shape).
fn beacon(c: &mut Criterion) {
    let ids = ids(10_000);
    let map = filled(&ids);
    let mut g = c.benchmark_group("beacon");
    g.throughput(Throughput::Elements(1));
    g.bench_function("record_and_visitor_10k", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 7919) % ids.len();
            let event = view(&ids[i]);
            map.record_all_from(black_box(&[event]), Some((20_000, 0x5eed)))
                .unwrap();
        })
    });
    g.finish();
}

/// The ingest edges every beacon crosses besides the maps: its content type checked
/// (twice: before the body is read and in `post_events`) and its 202 built.
fn ingest_edges(c: &mut Criterion) {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    let mut g = c.benchmark_group("ingest_edges");
    g.throughput(Throughput::Elements(1));
    g.bench_function("check_content_type", |b| {
        b.iter(|| check_content_type(black_box(&headers)).is_ok())
    });
    g.bench_function("accepted_1_1", |b| b.iter(|| accepted(black_box(1), black_box(1))));
    g.bench_function("accepted_100_100", |b| {
        b.iter(|| accepted(black_box(100), black_box(100)))
    });
    g.finish();
}

/// One flush of 10,000 articles (a view each, no metadata) to the embedded store, on
/// articles it already holds (rows updated in place): the work the wrk bench's
/// service does every second.
fn embedded_apply(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path()).unwrap();
    let ids = ids(10_000);
    let mut seq = 0u64;
    let mut batch = || {
        seq += 1;
        Batch {
            id: BatchId {
                instance: "bench".into(),
                epoch_ms: 1,
                seq,
                chunk: 0,
            },
            flushed_at_ms: viewcounter::clock::unix_ms(),
            articles: ids
                .iter()
                .map(|id| ArticleDelta {
                    article: ArticleId::parse(id).unwrap(),
                    counts: Counts::of_views(1),
                    meta: Meta::default(),
                    visitors: Vec::new(),
                })
                .collect(),
        }
    };
    rt.block_on(store.apply(&batch())).unwrap();
    let mut g = c.benchmark_group("embedded_apply");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ids.len() as u64));
    g.bench_function("10k_articles", |b| {
        b.iter_batched(
            &mut batch,
            |b| rt.block_on(store.apply(&b)).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn parse(c: &mut Criterion) {
    let networks = Networks::default();
    let one = br#"{"type":"view","article":"12345","section":"analytics","lang":"en"}"#.to_vec();
    let batch = format!(
        "[{}]",
        (0..100)
            .map(|i| format!(r#"{{"type":"view","article":"a{i}","section":"analytics","lang":"en"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    )
    .into_bytes();
    let mut g = c.benchmark_group("parse");
    for (name, body, n) in [("single", &one, 1u64), ("batch_100", &batch, 100)] {
        g.throughput(Throughput::Elements(n));
        g.bench_function(name, |b| {
            b.iter(|| {
                let raws = split_events(black_box(body)).unwrap();
                let parsed: Vec<RawEvent<'_>> = raws
                    .items
                    .iter()
                    .map(|r| RawEvent::from_json(r.get().as_bytes()).unwrap())
                    .collect();
                let valid: Vec<_> = parsed.iter().map(|r| r.validate(&networks).unwrap()).collect();
                black_box(valid.len())
            })
        });
    }
    g.finish();
}

/// The bot filter on a browser's User-Agent (the common case: no pattern matches; a
/// repeated agent's verdict comes from the thread's cache) and on a crawler's, and on
/// agents all different (the automaton runs every time).
fn bots(c: &mut Criterion) {
    let filter = BotFilter::new();
    let browser = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    let crawler = b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let mut g = c.benchmark_group("bot_filter");
    g.throughput(Throughput::Elements(1));
    for (name, ua) in [("browser", &browser[..]), ("crawler", &crawler[..])] {
        g.bench_function(name, |b| b.iter(|| black_box(filter.is_bot(black_box(ua)))));
    }
    // 10,000 distinct browser builds in turn: past the thread's verdict cache, every
    // call runs the automaton.
    let distinct: Vec<Vec<u8>> = (0..10_000)
        .map(|i| format!("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/{i}.0 Safari/537.36").into_bytes())
        .collect();
    let mut next = distinct.iter().cycle();
    g.bench_function("browser_uncached", |b| {
        b.iter(|| black_box(filter.is_bot(black_box(next.next().expect("cycles")))))
    });
    g.finish();
}

fn drain(c: &mut Criterion) {
    let mut g = c.benchmark_group("drain");
    g.sample_size(10);
    for n in [100_000, 1_000_000] {
        let ids = ids(n);
        let map = filled(&ids);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    for id in &ids {
                        map.record(&view(id));
                    }
                    let start = Instant::now();
                    black_box(map.drain());
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

fn top(c: &mut Criterion) {
    let networks = Networks::default();
    let mut tallies = HashMap::new();
    let mut meta = HashMap::new();
    for (i, id) in ids(100_000).iter().enumerate() {
        let id = ArticleId::parse(id).unwrap();
        let views = (i as u64 * 2_654_435_761) % 10_000;
        tallies.insert(id.clone(), Counts::of_views(views));
        let section = if i % 10 == 0 { "analytics" } else { "news" };
        meta.insert(
            id,
            Meta {
                section: Some(section.into()),
                lang: Some("en".into()),
                ..Meta::default()
            },
        );
    }
    struct NoBuckets;
    impl BucketSource for NoBuckets {
        fn bucket_rows(&self, _: Granularity, _: u64) -> Result<Vec<ArticleDelta>, StoreError> {
            Ok(Vec::new())
        }
    }
    let windows = Windows::load(
        &NoBuckets,
        1_790_000_000_000,
        tallies.into_iter().map(Ok),
        meta.into_iter().map(Ok),
    )
    .unwrap();
    let mut g = c.benchmark_group("top_rank_100k");
    for query in [
        "window=all&limit=10",
        "window=all&limit=100",
        "window=all&limit=10&section=analytics",
    ] {
        let q = TopQuery::parse(query, &networks).unwrap();
        g.bench_function(query, |b| b.iter(|| black_box(windows.top(&q))));
    }
    g.finish();
}

criterion_group!(
    benches,
    record,
    beacon,
    ingest_edges,
    parse,
    bots,
    drain,
    embedded_apply,
    top
);
criterion_main!(benches);
