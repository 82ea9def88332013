//! `/v1/top?window=24h` latency with 100,000 distinct articles in the window, on both
//! stores. The store is filled first by applying batches directly (`Store::apply`,
//! 50 batches of 2,000 articles, 28 minutes apart, over the last 23 hours), then
//! the service starts in process (port 0, flush interval 1 s) and one keep-alive
//! client sends the same query sequentially, as a dashboard poller would; a second
//! phase sends distinct queries (every one a cache miss: store refresh and ranking).
//!
//! Run: `CARGO_TARGET_DIR=... cargo bench --bench top_latency -- [--requests 5000]`

#[path = "../tests/common/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;
#[path = "support/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use redis_server::RedisServer;
use viewcounter::clock::{Clock, ManualClock, SystemClock};
use viewcounter::event::{ArticleId, Meta};
use viewcounter::store::{ArticleDelta, Batch, BatchId, EmbeddedStore, RedisStore, Store};

const ARTICLES: usize = 100_000;
const BATCH: usize = 2_000;

fn requests() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(5_000)
}

/// Batch `i` of the fill: articles `i*BATCH..`.
fn batch(i: usize, flushed_at_ms: u64) -> Batch {
    let articles = (i * BATCH..(i + 1) * BATCH)
        .map(|n| ArticleDelta {
            article: ArticleId::parse(&format!("article-{n:06}")).unwrap(),
            views: 1 + (n as u64 * 7919) % 500,
            shares: vec![("telegram".into(), (n as u64 % 7) + 1)],
            meta: Meta {
                section: Some(format!("s{}", n % 10).into()),
                lang: Some("en".into()),
                ..Meta::default()
            },
            visitors: Vec::new(),
        })
        .collect();
    Batch {
        id: BatchId {
            instance: "fill".into(),
            epoch_ms: 1,
            seq: i as u64 + 1,
            chunk: 0,
        },
        flushed_at_ms,
        articles,
    }
}

/// Applies the fill, oldest first, each batch through a store whose clock shows its
/// flush time; on Redis, closed minutes are folded into their hours as the service's
/// background task would have done at the time.
async fn fill(redis_url: Option<&str>, dir: &Path) {
    let now = SystemClock.now_ms();
    let batches = ARTICLES / BATCH;
    for i in 0..batches {
        let at = now - (batches - 1 - i) as u64 * 28 * 60_000;
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::at(at));
        let store = match redis_url {
            Some(url) => Store::Redis(RedisStore::open_with_clock(url, "vc", clock).unwrap()),
            None => Store::Embedded(EmbeddedStore::open_with_clock(dir, clock).unwrap()),
        };
        store.apply(&batch(i, at)).await.unwrap();
        let later = at + 3 * 60_000;
        if let (Some(url), true) = (redis_url, later <= now) {
            let store = RedisStore::open_with_clock(url, "vc", Arc::new(ManualClock::at(later))).unwrap();
            store.fold_closed_minutes().await.unwrap();
        }
    }
}

async fn get(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, path: &str) -> Duration {
    let req = http::Request::get(path)
        .header("host", "bench")
        .body(Empty::new())
        .unwrap();
    let started = Instant::now();
    let resp = sender.send_request(req).await.expect("response");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let elapsed = started.elapsed();
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
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).ok();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
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
    report(store, "distinct queries (all misses)", missed);
}

fn run(store: &str, redis_url: Option<&str>, n: usize) {
    let data = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let filled = Instant::now();
    rt.block_on(fill(redis_url, data.path()));
    eprintln!("{store}: filled {ARTICLES} articles in {:.1?}", filled.elapsed());
    let started = Instant::now();
    let addr = servers::start_service(&rt, data.path(), redis_url);
    eprintln!("{store}: service started (windows loaded) in {:.1?}", started.elapsed());
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    client.block_on(measure(store, addr, n));
    drop(rt);
}

fn main() {
    let n = requests();
    println!("| store | phase | requests | p50 ms | p99 ms | max ms |");
    println!("|---|---|---:|---:|---:|---:|");
    run("embedded", None, n);
    let redis = RedisServer::start();
    run("redis", Some(&redis.url()), n);
}
