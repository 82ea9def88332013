//! Load for the Redis fault tests: tasks post batches of events over ~2,000 articles
//! and keep a ledger of every event that got a 2xx (a 503 counts nothing). At the end,
//! Redis must hold exactly the ledger, article by article.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use tokio::task::JoinSet;
use viewcounter::store::redis::keys::{Keys, Partition, PARTITIONS, SHARE_FIELD_PREFIX, VIEWS_FIELD};

use crate::support::Client;

/// Articles the load spreads over.
pub const ARTICLES: usize = 2_000;
/// Events per request.
pub const EVENTS_PER_REQUEST: usize = 10;
const NETWORKS: [&str; 3] = ["telegram", "facebook", "x"];

/// The id of article `i`.
pub fn article(i: usize) -> String {
    format!("art-{i}")
}

/// Expected totals of one article: views and shares by network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub views: u64,
    pub shares: BTreeMap<String, u64>,
}

/// Every event that got a 2xx, by article.
#[derive(Debug, Default)]
pub struct Ledger {
    totals: Mutex<BTreeMap<String, Totals>>,
    pub accepted: AtomicU64,
    pub refused_requests: AtomicU64,
}

impl Ledger {
    /// Records one accepted event.
    pub fn add(&self, article: &str, network: Option<&str>, n: u64) {
        let mut totals = self.totals.lock().unwrap();
        let t = totals.entry(article.to_string()).or_default();
        match network {
            None => t.views += n,
            Some(net) => *t.shares.entry(net.to_string()).or_default() += n,
        }
        drop(totals);
        self.accepted.fetch_add(n, Ordering::Relaxed);
    }

    /// The expected totals of every article that got an event.
    pub fn snapshot(&self) -> BTreeMap<String, Totals> {
        self.totals.lock().unwrap().clone()
    }

    /// Events accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// A tiny deterministic generator (xorshift64*): the load needs spread, not quality.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Running load tasks; `stop` returns the ledger.
pub struct Load {
    pub ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

impl Load {
    /// Starts `tasks` posters against `client`.
    pub fn start(client: &Client, tasks: usize) -> Load {
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        for t in 0..tasks {
            let (client, ledger, stop) = (client.clone(), ledger.clone(), stop.clone());
            set.spawn(post_until_stopped(client, ledger, stop, t as u64 + 1));
        }
        Load {
            ledger,
            stop,
            tasks: set,
        }
    }

    /// Waits until `n` more events were accepted (panics after 60 s).
    pub async fn wait_accepted(&self, n: u64) {
        let target = self.ledger.accepted() + n;
        self.wait(|l| l.accepted() >= target, "accepted events").await;
    }

    /// Waits until `n` more requests were refused with 503 (panics after 60 s).
    pub async fn wait_refused(&self, n: u64) {
        let target = self.ledger.refused_requests.load(Ordering::Relaxed) + n;
        self.wait(|l| l.refused_requests.load(Ordering::Relaxed) >= target, "503s")
            .await;
    }

    async fn wait(&self, done: impl Fn(&Ledger) -> bool, what: &str) {
        let ok = crate::support::eventually(60, || {
            let d = done(&self.ledger);
            async move { d }
        })
        .await;
        assert!(ok, "the load did not reach its target of {what} within 60 s");
    }

    /// Stops the posters and waits for their last requests.
    pub async fn stop(mut self) -> Arc<Ledger> {
        self.stop.store(true, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        self.ledger
    }
}

async fn post_until_stopped(client: Client, ledger: Arc<Ledger>, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    while !stop.load(Ordering::Relaxed) {
        let events: Vec<(String, Option<&str>)> = (0..EVENTS_PER_REQUEST)
            .map(|_| {
                let a = article(rng.below(ARTICLES));
                let net = (rng.below(5) == 0).then(|| NETWORKS[rng.below(NETWORKS.len())]);
                (a, net)
            })
            .collect();
        let body = events
            .iter()
            .map(|(a, net)| event_json(a, *net))
            .collect::<Vec<_>>()
            .join(",");
        let reply = client.post_events(&format!("[{body}]")).await;
        match reply.status {
            StatusCode::ACCEPTED => events.iter().for_each(|(a, net)| ledger.add(a, *net, 1)),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(reply.error_code(), "capacity_exhausted");
                ledger.refused_requests.fetch_add(1, Ordering::Relaxed);
                // A refused client backs off, as Retry-After asks (shortened here).
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
}

fn event_json(article: &str, network: Option<&str>) -> String {
    match network {
        None => format!(r#"{{"type":"view","article":"{article}","section":"news","lang":"en"}}"#),
        Some(n) => format!(r#"{{"type":"share","article":"{article}","network":"{n}"}}"#),
    }
}

/// Every article's totals Redis holds, read straight from the partitions' counts
/// hashes. `url` is one server's, or a cluster's nodes' URLs comma-separated.
pub fn redis_totals(url: &str, prefix: &str) -> BTreeMap<String, Totals> {
    let mut conn: Box<dyn redis::ConnectionLike> = if url.contains(',') {
        let client = redis::cluster::ClusterClient::new(url.split(',')).unwrap();
        Box::new(client.get_connection().unwrap())
    } else {
        Box::new(redis::Client::open(url).unwrap().get_connection().unwrap())
    };
    let keys = Keys::new(prefix);
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for p in 0..PARTITIONS {
        let hash: BTreeMap<String, u64> = redis::cmd("HGETALL")
            .arg(keys.counts(Partition::from_index(p)))
            .query(&mut *conn)
            .unwrap();
        for (field, n) in hash {
            let (article, counter) = field.split_once(':').expect("<article>:<counter>");
            let t = out.entry(article.to_string()).or_default();
            if counter == VIEWS_FIELD {
                t.views = n;
            } else if let Some(net) = counter.strip_prefix(SHARE_FIELD_PREFIX) {
                t.shares.insert(net.to_string(), n);
            }
        }
    }
    out
}

/// Asserts Redis holds exactly the events the ledgers accepted, article by article.
pub fn assert_redis_holds(url: &str, ledgers: &[&Ledger]) {
    let mut expected: BTreeMap<String, Totals> = BTreeMap::new();
    for ledger in ledgers {
        for (a, t) in ledger.snapshot() {
            let e = expected.entry(a).or_default();
            e.views += t.views;
            for (net, n) in t.shares {
                *e.shares.entry(net).or_default() += n;
            }
        }
    }
    let stored = redis_totals(url, "vc");
    let ids: Vec<String> = (0..ARTICLES).map(article).collect();
    let wrong: Vec<_> = ids
        .iter()
        .filter(|a| expected.get(*a) != stored.get(*a))
        .take(5)
        .map(|a| format!("{a}: expected {:?}, stored {:?}", expected.get(a), stored.get(a)))
        .collect();
    assert!(wrong.is_empty(), "Redis differs from the accepted events: {wrong:#?}");
    assert!(
        stored.keys().all(|a| expected.contains_key(a)),
        "Redis holds articles nobody counted"
    );
}
