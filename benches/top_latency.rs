//! `/v1/top` latency with 100,000 distinct articles in the window (`--articles` for
//! more), on both stores. The store is filled first by applying batches directly
//! (`Store::apply`, 50 batches, 28 minutes apart, over the last 23 hours, each applied
//! in chunks of the flusher's size; on Redis, closed minutes folded after each as the
//! background task would have; a step that outlasts the store's call timeout on a
//! loaded box runs again, as the flusher would), then the service starts in process
//! (port 0, flush interval 1 s) and one keep-alive client sends the same query
//! sequentially, as a dashboard poller would; a second phase asks every limit from 10
//! to 100 of views and shares (all answered from the one pass of each metric).
//!
//! A third phase runs 50 clients at once (`--clients`), each asking every combination
//! of window, metric, network, section and language (792 queries, 24 (metric,
//! window) passes), twice: in the first round the first requests of a (metric, window)
//! wait for its pass, every later one is answered from it, stale ones while a
//! background recomputation runs (no new pass when only counts rose: the lists are
//! brought up to date from the articles that rose); the second round is that steady
//! state alone, with no event arriving.
//! A third round runs while a trickle of events flows (`--trickle`, 300 events a
//! second by default, one in ten a share, each for a random article of the fill with
//! its own section and language, posted in batches every 100 ms through
//! `POST /v1/events`): the windows then change at every flush, as on a live site, so
//! every (metric, window) asked is recomputed every flush interval (from the slots
//! that rose since the last computation) and an answer cannot come from a ranking
//! that is merely kept because nothing changed. Each client walks the combinations
//! three times in that round, so it spans several flushes. `--trickle 0` leaves it out.
//! `--articles 1000000` fills a million articles (the fill takes minutes);
//! `--embedded-only` / `--redis-only` run one store.
//!
//! Run: `cargo bench --bench top_latency -- [--requests 5000] [--articles N] [--clients 50] [--trickle 300]`

#[path = "../tests/it/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;
#[path = "support/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use redis_server::RedisServer;
use viewcounter::clock::{Clock, ManualClock, SystemClock};
use viewcounter::counts::Counts;
use viewcounter::event::{ArticleId, Meta};
use viewcounter::flusher::CHUNK_ARTICLES;
use viewcounter::store::{ArticleDelta, Batch, BatchId, EmbeddedStore, RedisStore, Store};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

fn requests() -> usize {
    arg("--requests", 5_000)
}

/// Articles in the fill (`--articles`, default 100,000).
fn articles() -> usize {
    arg("--articles", 100_000)
}

/// Articles a fill batch holds: 50 batches for the default fill, at most 100.
fn batch_size() -> usize {
    (articles() / 50).max(articles() / 100).max(1)
}

/// Batch `i` of the fill: articles `i*batch_size()..`, in chunks of at most
/// [`CHUNK_ARTICLES`] as the flusher applies a drain (one Redis call per chunk stays
/// within the store's call timeout).
fn batch(i: usize, flushed_at_ms: u64) -> Vec<Batch> {
    let size = batch_size();
    let articles: Vec<ArticleDelta> = (i * size..(i + 1) * size)
        .map(|n| ArticleDelta {
            article: ArticleId::parse(&format!("article-{n:06}")).unwrap(),
            counts: Counts::new(1 + (n as u64 * 7919) % 500, [("telegram", (n as u64 % 7) + 1)]),
            meta: Meta {
                section: Some(format!("s{}", n % 10).into()),
                lang: Some("en".into()),
                ..Meta::default()
            },
            visitors: Vec::new(),
        })
        .collect();
    articles
        .chunks(CHUNK_ARTICLES)
        .enumerate()
        .map(|(chunk, articles)| Batch {
            id: BatchId {
                instance: "fill".into(),
                epoch_ms: 1,
                seq: i as u64 + 1,
                chunk: chunk as u32,
            },
            flushed_at_ms,
            articles: articles.to_vec(),
        })
        .collect()
}

/// Applies the fill, oldest first, each batch through a store whose clock shows its
/// flush time; on Redis, closed minutes are folded into their hours as the service's
/// background task would have done at the time.
async fn fill(redis_url: Option<&str>, dir: &Path) {
    let now = SystemClock.now_ms();
    let batches = articles() / batch_size();
    // Spread over the last 23 hours, oldest first.
    let spacing = 23 * 3_600_000 / batches as u64;
    let first_at = now - (batches - 1) as u64 * spacing;
    // The embedded store is opened once, its clock moved to each batch's flush time.
    let clock = Arc::new(ManualClock::at(first_at));
    let embedded = match redis_url {
        Some(_) => None,
        None => Some(Store::Embedded(
            EmbeddedStore::open_with_clock(dir, clock.clone()).unwrap(),
        )),
    };
    for i in 0..batches {
        let at = first_at + i as u64 * spacing;
        clock.advance(at - clock.now_ms());
        let store = match (redis_url, &embedded) {
            (Some(url), _) => {
                Store::Redis(RedisStore::open_with_clock(url, "vc", Arc::new(ManualClock::at(at))).unwrap())
            }
            (None, Some(s)) => s.clone(),
            (None, None) => unreachable!(),
        };
        for chunk in batch(i, at) {
            retried("apply", || store.apply(&chunk)).await;
        }
        let later = at + 3 * 60_000;
        if let (Some(url), true) = (redis_url, later <= now) {
            let store = RedisStore::open_with_clock(url, "vc", Arc::new(ManualClock::at(later))).unwrap();
            retried("fold", || store.fold_closed_minutes()).await;
        }
    }
    if let Some(Store::Embedded(s)) = &embedded {
        // Let the fill's own load finish so the file is free for the service.
        while !s.rankings_ready() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs a fill step until it succeeds (at most 10 times). On a loaded box a Redis call
/// of the fill now and then outlasts the store's call timeout (an AOF rewrite, another
/// engineer's build); the steps are exactly-once (an apply's batch id, the fold's
/// record of the last minute folded), so running one again is what the flusher does.
async fn retried<T, E: std::fmt::Debug, Fut: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    step: impl Fn() -> Fut,
) -> T {
    for attempt in 1.. {
        match step().await {
            Ok(v) => return v,
            Err(e) if attempt < 10 => eprintln!("fill: {what} failed ({e:?}); again"),
            Err(e) => panic!("fill: {what} failed {attempt} times: {e:?}"),
        }
    }
    unreachable!()
}

/// GETs `path`; how long the answer took, and its body.
async fn timed_get(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> (Duration, Bytes) {
    let req = http::Request::get(path)
        .header("host", "bench")
        .body(Empty::new())
        .unwrap();
    let started = Instant::now();
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let elapsed = started.elapsed();
    assert!(
        status.is_success(),
        "{path}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    (elapsed, body)
}

/// [`timed_get`] of a ranking of 10 articles.
async fn get(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, path: &str) -> Duration {
    let (elapsed, body) = timed_get(sender, path).await;
    assert!(
        body.len() > 100,
        "a ranking of 10 articles: {}",
        String::from_utf8_lossy(&body)
    );
    elapsed
}

fn report(store: &str, phase: &str, mut lat: Vec<Duration>) {
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "| {store} | {phase} | {} | {:.3} | {:.3} | {:.3} |",
        lat.len(),
        p(0.50),
        p(0.99),
        lat.last().unwrap().as_secs_f64() * 1e3
    );
}

async fn measure(store: &str, addr: SocketAddr, n: usize) {
    let mut sender = servers::connect(addr).await;
    for _ in 0..20 {
        get(&mut sender, "/v1/top?window=24h&limit=10").await;
    }
    let mut polled = Vec::with_capacity(n);
    for _ in 0..n {
        polled.push(get(&mut sender, "/v1/top?window=24h&limit=10").await);
    }
    report(store, "same query (poller)", polled);
    let mut missed = Vec::new();
    for limit in 10..=100 {
        for metric in ["views", "shares"] {
            missed.push(
                get(
                    &mut sender,
                    &format!("/v1/top?window=24h&limit={limit}&metric={metric}"),
                )
                .await,
            );
        }
    }
    report(store, "limit 10–100 × views/shares", missed);
}

/// Every (metric, network, window, section, lang) combination: each a distinct ranking.
fn combinations() -> Vec<String> {
    let mut out = Vec::new();
    let metrics = [
        "metric=views",
        "metric=shares",
        "metric=shares&network=telegram",
        "metric=shares&network=x",
    ];
    let sections: Vec<String> = std::iter::once(String::new())
        .chain((0..10).map(|s| format!("&section=s{s}")))
        .collect();
    for window in ["15m", "1h", "24h", "7d", "30d", "all"] {
        for metric in metrics {
            for section in &sections {
                for lang in ["", "&lang=en", "&lang=ru"] {
                    out.push(format!("/v1/top?window={window}&{metric}{section}{lang}&limit=10"));
                }
            }
        }
    }
    out
}

/// Posts `per_second` events a second (in batches every 100 ms) until `stop`: views,
/// and one in ten a share on telegram, each for a random article of the fill with the
/// section and language the fill gave it. How many events were accepted.
async fn trickle(addr: SocketAddr, per_second: usize, stop: Arc<AtomicBool>) -> usize {
    let mut sender = servers::connect::<Full<Bytes>>(addr).await;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64: a fixed sequence is enough for spreading articles.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut accepted = 0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let events: Vec<String> = (0..(per_second / 10).max(1))
            .map(|_| {
                let r = next();
                let n = r as usize % articles();
                let article = format!("article-{n:06}");
                match r % 10 {
                    0 => format!(r#"{{"type":"share","article":"{article}","network":"telegram"}}"#),
                    _ => format!(
                        r#"{{"type":"view","article":"{article}","section":"s{}","lang":"en"}}"#,
                        n % 10
                    ),
                }
            })
            .collect();
        let req = http::Request::post("/v1/events")
            .header("host", "bench")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!("[{}]", events.join(",")))))
            .unwrap();
        let resp = sender.send_request(req).await.expect("events answered");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(status, 202, "events: {}", String::from_utf8_lossy(&body));
        accepted += events.len();
    }
    accepted
}

/// `clients` keep-alive clients at once, each walking every combination from its own
/// offset: the first request of a ranking is a miss, shared by whoever asks meanwhile.
/// With `per_second` above zero, a [`trickle`] of events flows meanwhile, and each
/// client walks the combinations `walks` times (a round then spans several flushes).
async fn concurrent(store: &str, addr: SocketAddr, clients: usize, round: &str, per_second: usize, walks: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let events = (per_second > 0).then(|| tokio::spawn(trickle(addr, per_second, stop.clone())));
    if events.is_some() {
        // Let a flush or two apply the first events before the clocks start.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let queries = Arc::new(combinations());
    let mut tasks = Vec::new();
    for c in 0..clients {
        let queries = queries.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = servers::connect(addr).await;
            let mut lat = Vec::with_capacity(queries.len() * walks);
            let offset = c * queries.len() / clients;
            for i in 0..queries.len() * walks {
                let q = &queries[(offset + i) % queries.len()];
                lat.push(get_any(&mut sender, q).await);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(events) = events {
        eprintln!("{store}: {round}: {} events accepted meanwhile", events.await.unwrap());
    }
    report(
        store,
        &format!(
            "{clients} clients, {} distinct rankings (filters, windows, metrics), {round}",
            queries.len()
        ),
        all,
    );
}

/// Like [`get`], for rankings that may be short (a rare filter).
async fn get_any(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, path: &str) -> Duration {
    timed_get(sender, path).await.0
}

/// Waits for `/readyz` 200, then for `/v1/top` to answer (on Redis `/readyz` does not
/// wait for the rankings' load, which `/v1/top` waits 2 s for before a 503); how long
/// that took.
async fn until_ready(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    for path in ["/readyz", "/v1/top?window=24h&limit=10"] {
        loop {
            let mut sender = servers::connect(addr).await;
            let req = http::Request::get(path)
                .header("host", "bench")
                .body(Empty::<Bytes>::new())
                .unwrap();
            if sender.send_request(req).await.unwrap().status().is_success() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    started.elapsed()
}

fn run(store: &str, redis_url: Option<&str>, n: usize) {
    let data = tempfile::tempdir().unwrap();
    let rt = servers::runtime();
    let filled = Instant::now();
    rt.block_on(fill(redis_url, data.path()));
    eprintln!("{store}: filled {} articles in {:.1?}", articles(), filled.elapsed());
    let started = Instant::now();
    let addr = servers::start_service(&rt, data.path(), redis_url);
    eprintln!("{store}: service serving in {:.1?}", started.elapsed());
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let loaded = client.block_on(until_ready(addr));
    eprintln!(
        "{store}: rankings loaded (/readyz 200, then /v1/top 200) {:.1?} after start",
        started.elapsed()
    );
    let _ = loaded;
    client.block_on(measure(store, addr, n));
    // The first round includes each (metric, window)'s first pass, which its first
    // requests wait for; the second is the steady state (background recomputations);
    // the third is that steady state while events flow.
    let clients = arg("--clients", 50);
    for round in ["first round", "second round"] {
        client.block_on(concurrent(store, addr, clients, round, 0, 1));
    }
    let per_second = arg("--trickle", 300);
    if per_second > 0 {
        let round = format!("third round, {per_second} events/s flowing");
        client.block_on(concurrent(store, addr, clients, &round, per_second, 3));
    }
    drop(rt);
}

fn main() {
    let n = requests();
    println!("| store | phase | requests | p50 ms | p99 ms | max ms |");
    println!("|---|---|---:|---:|---:|---:|");
    let flag = |name: &str| std::env::args().any(|a| a == name);
    if !flag("--redis-only") {
        run("embedded", None, n);
    }
    if !flag("--embedded-only") {
        let redis = RedisServer::start();
        run("redis", Some(&redis.url()), n);
    }
}
