//! The load benchmark: the same client (64 keep-alive HTTP/1.1 connections, one view a
//! request over 10,000 articles) against three targets, in alternating rounds:
//!
//! - `bare`: a hyper server that only reads the body and answers 204 (the ceiling of
//!   the HTTP stack on this machine);
//! - `service`: viewcounter itself, on a private Redis (or `--embedded`);
//! - `incr`: a hyper server doing one Redis INCR per request (the common design).
//!
//! It reports requests/s, p50/p99 latency, service/bare, and Redis commands per 1M
//! events (from INFO commandstats, which counts commands run inside scripts too).
//!
//! Run: `cargo bench --bench load -- [--seconds 10] [--rounds 3] [--connections 64] [--articles 10000] [--embedded] [--no-user-agent]`

#[path = "../tests/it/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;
#[path = "support/servers.rs"]
mod servers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use redis_server::RedisServer;

struct Options {
    seconds: u64,
    rounds: usize,
    connections: usize,
    embedded: bool,
    articles: u64,
    /// Send no `User-Agent` (the bot filter is skipped; the visitor hash reads none).
    no_user_agent: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Options {
        seconds: value("--seconds", 10),
        rounds: value("--rounds", 3) as usize,
        connections: value("--connections", 64) as usize,
        embedded: args.iter().any(|a| a == "--embedded"),
        articles: value("--articles", 10_000),
        no_user_agent: args.iter().any(|a| a == "--no-user-agent"),
    }
}

/// What one round against one target measured.
struct RoundResult {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl RoundResult {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// A browser's: the bot filter runs its whole automaton on it (no match) and the
/// visitor hash reads it, as for a real page's beacon.
const BROWSER_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

async fn connection_loop(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seed: u64,
    articles: u64,
    user_agent: Option<&'static str>,
) -> (u64, u64, Vec<u32>) {
    let mut sender = servers::connect(addr).await;
    let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::with_capacity(200_000));
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    while !stop.load(Ordering::Relaxed) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let body = format!(
            r#"{{"type":"view","article":"a{}","section":"news","lang":"en"}}"#,
            (x >> 33) % articles
        );
        let mut req = http::Request::post("/v1/events")
            .header("host", "bench")
            .header("content-type", "text/plain");
        if let Some(ua) = user_agent {
            req = req.header("user-agent", ua);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        let started = Instant::now();
        match sender.send_request(req).await {
            Ok(resp) => {
                let success = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                lat.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if success {
                    ok += 1;
                } else {
                    errors += 1;
                }
            }
            Err(_) => {
                errors += 1;
                break;
            }
        }
    }
    (ok, errors, lat)
}

async fn round(addr: SocketAddr, opts: &Options) -> RoundResult {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..opts.connections)
        .map(|i| {
            let ua = (!opts.no_user_agent).then_some(BROWSER_UA);
            tokio::spawn(connection_loop(addr, stop.clone(), i as u64 + 1, opts.articles, ua))
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(opts.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut result = RoundResult {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for t in tasks {
        let (ok, errors, lat) = t.await.expect("client task");
        result.requests += ok;
        result.errors += errors;
        result.latencies_us.extend(lat);
    }
    result.elapsed = started.elapsed();
    result.latencies_us.sort_unstable();
    result
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let opts = options();
    let redis = RedisServer::start_with_fsync("everysec");
    let servers = servers::Servers::start(&redis.url(), opts.embedded);
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let targets = [
        ("bare", servers.bare),
        ("service", servers.service),
        ("incr", servers.incr),
    ];
    let mut rates = vec![Vec::new(); targets.len()];
    let mut p50 = vec![Vec::new(); targets.len()];
    let mut p99 = vec![Vec::new(); targets.len()];
    let mut commands = vec![Vec::new(); targets.len()];
    for r in 0..opts.rounds {
        for (i, (name, addr)) in targets.iter().enumerate() {
            redis.cli(&["CONFIG", "RESETSTAT"]);
            let res = client.block_on(round(*addr, &opts));
            if *name == "service" {
                // Let the last flush land before counting commands.
                std::thread::sleep(Duration::from_millis(1500));
            }
            let calls = servers::redis_calls(&redis);
            if *name == "service" {
                println!("         service Redis commands: {}", servers::redis_breakdown(&redis));
            }
            let per_million = calls as f64 * 1e6 / res.requests.max(1) as f64;
            println!(
                "round {} {:8} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}  redis cmds/1M events {:>10.0}",
                r + 1,
                name,
                res.rate(),
                res.percentile(0.50),
                res.percentile(0.99),
                res.errors,
                per_million
            );
            rates[i].push(res.rate());
            p50[i].push(res.percentile(0.50));
            p99[i].push(res.percentile(0.99));
            commands[i].push(per_million);
        }
    }
    println!(
        "\nmedians over {} rounds of {} s, {} connections:",
        opts.rounds, opts.seconds, opts.connections
    );
    println!("| target | req/s | p50 ms | p99 ms | Redis commands per 1M events |");
    println!("|---|---:|---:|---:|---:|");
    for (i, (name, _)) in targets.iter().enumerate() {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.0} |",
            median(rates[i].clone()),
            median(p50[i].clone()),
            median(p99[i].clone()),
            median(commands[i].clone())
        );
    }
    if targets.len() == 3 {
        let ratio = median(rates[1].clone()) / median(rates[0].clone());
        let fewer = median(commands[2].clone()) / median(commands[1].clone()).max(1.0);
        println!("\nservice/bare = {ratio:.2}; incr sends {fewer:.1}x the Redis commands of the service");
    }
}
