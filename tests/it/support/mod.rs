//! Shared helpers of the integration tests: the app on port 0 (in process or as the
//! real binary), a small HTTP client, and a private redis-server on a free port.
#![allow(dead_code, unused_imports)]

pub mod batches;
pub mod browser;
pub mod client;
pub mod load;
pub mod process;
pub mod redis_server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use viewcounter::{App, Config};

pub use client::{Client, Reply};
pub use redis_server::{unique_prefix, RedisCluster, RedisServer};

/// Which store a contract test runs against.
#[derive(Debug, Clone)]
pub enum Backend {
    /// redb in the test's data directory.
    Embedded,
    /// A redis-server started by the test (URL), or a Redis Cluster (its nodes' URLs,
    /// comma-separated).
    Redis(String),
    /// A Redis (Cluster) that other tests use too (its URLs), under a key prefix of
    /// this test's own.
    SharedRedis { urls: String, prefix: String },
}

/// The app running inside the test process, on an ephemeral port.
pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub client: Client,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

/// The base arguments every test app gets: port 0, a data dir, a short flush interval
/// (visitor marks too: tests read visitors as soon as the counts).
pub fn base_args(data_dir: &Path) -> Vec<String> {
    vec![
        "viewcounter".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--flush-interval".into(),
        "100ms".into(),
        "--visitor-flush-interval".into(),
        "100ms".into(),
    ]
}

impl TestApp {
    /// Starts the app on a fresh data directory with `extra` flags.
    pub async fn start(extra: &[&str]) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut app = TestApp::start_in(dir.path(), extra).await;
        app._dir = Some(dir);
        app
    }

    /// Starts the app on `backend` with `extra` flags.
    pub async fn start_on(backend: &Backend, extra: &[&str]) -> TestApp {
        let (urls, prefix) = match backend {
            Backend::Embedded => return TestApp::start(extra).await,
            Backend::Redis(url) => (url, None),
            Backend::SharedRedis { urls, prefix } => (urls, Some(prefix)),
        };
        // Many apps and redis-servers share two cores in a test run: a read that
        // takes over the production 500 ms is load, not the stall this bound is for.
        let mut args = vec!["--redis-url", urls.as_str(), "--redis-read-timeout", "5s"];
        if let Some(prefix) = prefix {
            args.extend(["--redis-prefix", prefix.as_str()]);
        }
        args.extend_from_slice(extra);
        TestApp::start(&args).await
    }

    /// Starts the app on an existing data directory (to test restarts).
    pub async fn start_in(data_dir: &Path, extra: &[&str]) -> TestApp {
        let mut args = base_args(data_dir);
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = Config::parse_from(args);
        config.validate().expect("valid test config");
        let app = App::build(config).await.expect("app builds");
        let addr = app.public_addr();
        let metrics_addr = app.metrics_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until(shutdown.clone()));
        TestApp {
            addr,
            metrics_addr,
            client: Client::new(addr),
            data_dir: data_dir.to_path_buf(),
            shutdown,
            task: Some(task),
            _dir: None,
        }
    }

    /// Graceful stop (as SIGTERM would): drain, final flush. Keeps the data dir.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("app task joins").expect("app stops cleanly");
        }
        self._dir.take()
    }

    /// Waits until every batch drained so far is acknowledged by the store and the
    /// journal is emptied (panics after `secs`). A test that reads the store straight
    /// after `stop` waits for this first: on a loaded box the final flush can outlast
    /// its timeout and leave its batches in the journal for the next start.
    pub async fn wait_caught_up(&self, secs: u64) {
        let done = eventually(secs, || async {
            self.client.metric("viewcounter_unacked_events").await == 0.0
                && self.client.metric("viewcounter_journal_bytes").await == 0.0
        })
        .await;
        assert!(done, "batches still unacknowledged after {secs} s");
    }

    /// Waits until the metric `sample` exceeds `above` (panics after `secs`).
    pub async fn wait_metric_above(&self, sample: &str, above: f64, secs: u64) {
        let ok = eventually(secs, || async { self.client.metric(sample).await > above }).await;
        if !ok {
            let mut state = String::new();
            for other in [
                FLUSH_OK,
                FLUSH_ERROR,
                FLUSH_DUPLICATE,
                "viewcounter_unacked_events",
                "viewcounter_store_up",
            ] {
                state.push_str(&format!("\n  {other} = {}", self.client.metric(other).await));
            }
            panic!("{sample} stayed at or below {above} for {secs} s; then:{state}");
        }
    }
}

/// `/metrics` samples of flushed batches by result.
pub const FLUSH_OK: &str = r#"viewcounter_flush_batches_total{result="ok"}"#;
pub const FLUSH_ERROR: &str = r#"viewcounter_flush_batches_total{result="error"}"#;
pub const FLUSH_DUPLICATE: &str = r#"viewcounter_flush_batches_total{result="duplicate"}"#;

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Taken by the tests that load the machine for minutes (the kill -9 bursts, the id
/// flood): on a 2-core box two of them at once starve each other's service past any
/// sensible deadline, so they run one at a time while the light tests go on beside them.
pub async fn one_heavy_test_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// Polls `check` every 20 ms until it returns true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_some(secs, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
    .is_some()
}

/// Polls `check` every 20 ms until it returns `Some` or `secs` pass.
pub async fn eventually_some<T, F, Fut>(secs: u64, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if let Some(v) = check().await {
            return Some(v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    None
}
