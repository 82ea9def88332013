//! How long an article read waits while a large drain is flushed: 1,000,000 distinct
//! pending keys (views of 1M articles, posted in batches of 1,000), then 8 clients
//! read `/v1/articles/{id}` on a fixed schedule (800 a second, latency counted from when
//! each read was due, as wrk2 does) while the flusher drains and applies them.
//! Reports p50 / p99 / max of the reads due between the flush tick and the moment
//! the store has acknowledged everything, and for comparison those of the reads due in
//! the `IDLE` before the tick, with nothing to flush (on a shared machine, the floor
//! that the load of the moment sets), and on Redis the average time of a flush script.
//!
//! Run: `cargo bench --bench read_during_flush -- [--keys 1000000] [--embedded] [--path P]`
//! (Redis by default: a private redis-server with `appendfsync everysec`). `--path`
//! reads another endpoint instead, e.g. `--path '/v1/top?window=1h'`: a
//! ranking asked for while a million articles land in the windows.

#[path = "../tests/it/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;
#[path = "support/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use redis_server::RedisServer;

/// The flush interval: long enough for the fill to finish before the next tick.
const INTERVAL: Duration = Duration::from_secs(30);
const BATCH: usize = 1_000;
/// Readers, each due to read every `PERIOD` (800 reads a second in all).
const READERS: u32 = 8;
const PERIOD: Duration = Duration::from_millis(10);
/// How long the readers run before the tick.
const IDLE: Duration = Duration::from_secs(5);

fn option(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn keys() -> usize {
    option("--keys").and_then(|k| k.parse().ok()).unwrap_or(1_000_000)
}

/// What the readers read: `--path`, or one article.
fn read_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| option("--path").unwrap_or_else(|| "/v1/articles/k42".into()))
}

async fn send(sender: &mut SendRequest<Full<Bytes>>, method: &str, path: &str, body: String) -> (u16, Bytes) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "bench")
        .header("content-type", "application/x-ndjson")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.expect("body").to_bytes())
}

/// Reads [`read_path`] every `PERIOD` on its own connection until `done`, each
/// latency measured from the moment the read was due (not from when the previous one
/// returned), so a reader stuck behind the drain records every read it could not send.
async fn read_on_schedule(addr: SocketAddr, offset: u32, done: Arc<AtomicBool>) -> Vec<(Instant, Duration)> {
    let mut sender = servers::connect(addr).await;
    let start = Instant::now() + PERIOD * offset / READERS;
    let mut lat = Vec::new();
    for k in 0u32.. {
        if done.load(Ordering::Relaxed) {
            break;
        }
        let due = start + PERIOD * k;
        tokio::time::sleep_until(due.into()).await;
        let (status, _) = send(&mut sender, "GET", read_path(), String::new()).await;
        assert_eq!(status, 200);
        lat.push((due, due.elapsed()));
    }
    lat
}

/// Posts views of `keys` distinct articles over 4 connections.
async fn fill(addr: SocketAddr, keys: usize) {
    let tasks: Vec<_> = (0..4)
        .map(|w| {
            tokio::spawn(async move {
                let mut sender = servers::connect(addr).await;
                for start in (w * BATCH..keys).step_by(4 * BATCH) {
                    let body: String = (start..(start + BATCH).min(keys))
                        .map(|i| format!("{{\"type\":\"view\",\"article\":\"k{i}\"}}\n"))
                        .collect();
                    let (status, _) = send(&mut sender, "POST", "/v1/events", body).await;
                    assert_eq!(status, 202, "the fill was refused");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// A metric's value (summed over its labels) from `/metrics`.
async fn metric(sender: &mut SendRequest<Full<Bytes>>, name: &str) -> f64 {
    let (_, body) = send(sender, "GET", "/metrics", String::new()).await;
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn percentile(lat: &[Duration], q: f64) -> f64 {
    lat[((lat.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
}

async fn measure(store: &str, addr: SocketAddr, started: Instant, keys: usize) {
    let filled = Instant::now();
    fill(addr, keys).await;
    eprintln!("{store}: {keys} keys posted in {:.1?}", filled.elapsed());
    let tick = started + INTERVAL;
    assert!(Instant::now() < tick, "the fill outlasted the flush interval");
    let flushed_before = metric(
        &mut servers::connect(addr).await,
        "viewcounter_last_flush_timestamp_seconds",
    )
    .await;
    tokio::time::sleep_until((tick - IDLE).into()).await;
    // Connected after the wait: the service closes idle keep-alive connections.
    let mut probe = servers::connect(addr).await;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|r| tokio::spawn(read_on_schedule(addr, r, done.clone())))
        .collect();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let flushed = metric(&mut probe, "viewcounter_last_flush_timestamp_seconds").await;
        let unacked = metric(&mut probe, "viewcounter_unacked_events").await;
        if flushed > flushed_before && unacked == 0.0 {
            break;
        }
    }
    done.store(true, Ordering::Relaxed);
    // A failed apply waits for the back-off (the flush interval here) before it retries.
    let errors = metric(&mut probe, "viewcounter_flush_batches_total{result=\"error\"}").await;
    eprintln!("{store}: {errors} batch applies failed and were retried");
    let (mut lat, mut idle, mut timeline) = (Vec::new(), Vec::new(), Vec::new());
    for r in readers {
        for (due, took) in r.await.unwrap() {
            if due < tick {
                idle.push(took)
            } else {
                lat.push(took);
                timeline.push((due - tick, took));
            }
        }
    }
    let flush = tick.elapsed();
    eprintln!("{}", slow_reads(&timeline));
    lat.sort_unstable();
    idle.sort_unstable();
    println!(
        "| {store} | {keys} | {:.1} | {} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} |",
        flush.as_secs_f64(),
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().unwrap().as_secs_f64() * 1e3,
        percentile(&idle, 0.50),
        percentile(&idle, 0.99),
    );
}

/// Reads slower than [`SLOW`] after the tick, grouped into stalls (reads due within
/// [`SLOW`] of each other), the 20 worst as `from +<s> s: <n> reads, worst <ms> ms`:
/// where in the flush the reads waited, to line up with the flusher's log.
fn slow_reads(timeline: &[(Duration, Duration)]) -> String {
    let mut slow: Vec<_> = timeline.iter().filter(|(_, took)| *took > SLOW).collect();
    slow.sort_unstable();
    let mut stalls: Vec<(Duration, usize, Duration)> = Vec::new();
    let mut last_due = None;
    for &&(due, took) in &slow {
        match stalls.last_mut() {
            Some((_, n, worst)) if last_due.is_some_and(|l| due - l <= SLOW) => {
                *n += 1;
                *worst = (*worst).max(took);
            }
            _ => stalls.push((due, 1, took)),
        }
        last_due = Some(due);
    }
    let mut out = format!(
        "reads over {SLOW:?} after the tick: {} in {} stalls",
        slow.len(),
        stalls.len()
    );
    // The 20 worst, in time order.
    stalls.sort_unstable_by_key(|s| std::cmp::Reverse(s.2));
    stalls.truncate(20);
    stalls.sort_unstable();
    for (from, n, worst) in &stalls {
        out.push_str(&format!(
            "\n  from +{:.2} s: {n} reads, worst {:.0} ms",
            from.as_secs_f64(),
            worst.as_secs_f64() * 1e3
        ));
    }
    out
}

/// A read slower than this counts as stalled in [`slow_reads`].
const SLOW: Duration = Duration::from_millis(20);

/// The average run time of a flush script (`EVALSHA`), from Redis's command statistics.
fn script_ms(redis: &RedisServer) -> Option<f64> {
    let stats = redis.cli(&["INFO", "commandstats"])?;
    let line = stats.lines().find(|l| l.starts_with("cmdstat_evalsha:"))?;
    let usec = line.split("usec_per_call=").nth(1)?.split(',').next()?;
    Some(usec.parse::<f64>().ok()? / 1e3)
}

/// Redis's forks (each stops Redis while it copies its page tables) and the longest,
/// from `INFO`: an AOF rewrite during the flush is one.
fn forks(redis: &RedisServer) -> Option<String> {
    let stats = redis.cli(&["INFO", "stats"])?;
    let field = |name: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::to_string))
    };
    Some(format!(
        "{} forks, the last took {} µs",
        field("total_forks")?,
        field("latest_fork_usec")?
    ))
}

/// Redis's slowest commands of the run (its `SLOWLOG`: every command over 10 ms), the
/// slowest first: a single command that long holds every other client, reads too.
fn slowest_commands(redis: &RedisServer) -> Vec<String> {
    let Ok(mut conn) = redis::Client::open(redis.url()).and_then(|c| c.get_connection()) else {
        return Vec::new();
    };
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1_000)
        .query(&mut conn)
        .unwrap_or_default();
    let mut slow: Vec<(i64, String)> = entries
        .iter()
        .filter_map(|e| {
            let redis::Value::Array(fields) = e else { return None };
            let usec: i64 = redis::from_redis_value(fields.get(2)?.clone()).ok()?;
            let args: Vec<String> = redis::from_redis_value(fields.get(3)?.clone()).ok()?;
            let command: Vec<&str> = args.iter().take(3).map(|a| &a[..a.len().min(40)]).collect();
            Some((usec, command.join(" ")))
        })
        .collect();
    slow.sort_by_key(|(usec, _)| -usec);
    slow.into_iter()
        .take(5)
        .map(|(usec, command)| format!("{:.1} ms `{command}`", usec as f64 / 1e3))
        .collect()
}

fn main() {
    let keys = keys();
    let embedded = std::env::args().any(|a| a == "--embedded");
    let redis = (!embedded).then(|| RedisServer::start_with_fsync("everysec"));
    let data = tempfile::tempdir().unwrap();
    let rt = servers::runtime();
    let capacity = (2 * keys).to_string();
    let started = Instant::now();
    let addr = servers::start_service_with(
        &rt,
        data.path(),
        redis.as_ref().map(|r| r.url()).as_deref(),
        &["--flush-interval", "30s", "--max-pending-keys", &capacity],
    );
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("Reads: `GET {}`\n", read_path());
    println!("| store | pending keys | flush s (from the tick) | reads | p50 ms | p99 ms | max ms | before the tick: p50 / p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let store = if embedded { "embedded" } else { "redis" };
    client.block_on(measure(store, addr, started, keys));
    if let Some(ms) = redis.as_ref().and_then(script_ms) {
        println!("\nA flush script ran {ms:.2} ms on average.");
    }
    if let Some(forks) = redis.as_ref().and_then(forks) {
        println!("Redis forked for its AOF rewrites: {forks}.");
    }
    if let Some(slowest) = redis.as_ref().map(slowest_commands) {
        println!(
            "Redis's slowest commands (SLOWLOG, over 10 ms): {}.",
            slowest.join("; ")
        );
    }
    drop(rt);
}
