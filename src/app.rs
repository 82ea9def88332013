//! App::build wires counter, store, flusher, metrics and listeners; `run_until`
//! serves until shutdown, then stops in order: stop accepting -> drain in-flight
//! requests (bounded) -> close ingest -> final flush (what the store did not take stays in the journal) -> return.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::counter::CounterMap;
use crate::event::BotFilter;
use crate::flusher::InFlight;
use crate::flusher::{FlushSettings, Flusher};
use crate::http::client::ClientAddr;
use crate::http::newsroom::Newsroom;
use crate::http::rate_limit::RateLimiter;
use crate::http::routes::Surface;
use crate::http::server::{connection_cap, raise_fd_limit, serve, ServerLimits, INTERNAL_MAX_CONNECTIONS};
use crate::http::top::TopCache;
use crate::http::{Api, SharedApi};
use crate::metrics::Metrics;
use crate::shutdown::Lifecycle;
use crate::store::redis::TOP_REFRESH_EVERY;
use crate::store::{RedisStore, Store};
use crate::visitors::{self, Salts};

/// A built service, listeners bound, the journal replayed, ready to serve.
#[derive(Debug)]
pub struct App {
    api: SharedApi,
    flusher: Flusher,
    public: TcpListener,
    internal: Option<TcpListener>,
    limits: ServerLimits,
}

/// A random id for this process, part of every batch id.
fn instance_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Opens the configured store.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    if let Some(url) = &config.redis_url {
        return open_redis(config, url).await;
    }
    Store::open_embedded(&config.data_dir)
        .with_context(|| format!("opening the embedded store in {}", config.data_dir.display()))
}

async fn open_redis(config: &Config, url: &str) -> anyhow::Result<Store> {
    let redis = if config.redis_cluster || url.contains(',') {
        let seeds: Vec<&str> = url.split(',').map(str::trim).collect();
        RedisStore::open_cluster(&seeds, &config.redis_prefix)
    } else {
        RedisStore::open(url, &config.redis_prefix)
    };
    let redis = redis.context("configuring the Redis client")?;
    let redis = redis
        .with_read_timeout(config.redis_read_timeout)
        .with_networks(config.share_networks.clone());
    let store = Store::Redis(redis);
    // Not fatal: while Redis is away the service counts in memory and retries.
    if let Err(e) = store.ping().await {
        tracing::warn!(error = %e, "Redis does not answer at start; counting in memory until it does");
    } else if let Store::Redis(redis) = &store {
        load_top_briefly(redis).await;
    }
    Ok(store)
}

/// How long the start waits for the Redis top windows: a small keyspace loads in
/// milliseconds and is ranked from the first request; a large one serves after this
/// bound while its load goes on (the refresher waits for it rather than start another).
const TOP_LOAD_WAIT_AT_START: std::time::Duration = std::time::Duration::from_secs(3);

async fn load_top_briefly(redis: &RedisStore) {
    let redis = redis.clone();
    let load = tokio::spawn(async move {
        if let Err(e) = redis.load_top().await {
            tracing::warn!(error = %e, "loading the top-articles windows failed; retrying in the background");
        }
    });
    if tokio::time::timeout(TOP_LOAD_WAIT_AT_START, load).await.is_err() {
        tracing::info!("the top-articles windows are still loading; serving meanwhile");
    }
}

/// The flusher's part of the configuration.
fn flush_settings(config: &Config) -> FlushSettings {
    FlushSettings {
        interval: config.flush_interval,
        visitor_interval: config.visitor_flush_interval,
        final_timeout: config.final_flush_timeout,
        journal_max_bytes: config.journal_max_bytes,
        data_dir: config.data_dir.clone(),
        instance: instance_id(),
    }
}

impl App {
    /// Opens the store, replays the journal, and binds the listeners.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let metrics = Metrics::new();
        metrics.pending_capacity.set(config.max_pending_keys as i64);
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        metrics.worker_threads.set(workers as i64);
        let counter = Arc::new(CounterMap::new(config.max_pending_keys, config.share_networks.clone()));
        // The journal lives there whatever the store: an instance on Redis that cannot
        // write it would count with no crash protection at all.
        ensure_writable(&config.data_dir)?;
        let store = open_store(&config).await?;
        store.set_max_articles(config.max_articles);
        // The store answered its open; without this an idle instance (no flush yet) reads as down.
        metrics.store_up.set(1);
        let in_flight = Arc::new(InFlight::default());
        let mut flusher = Flusher::new(
            counter.clone(),
            store.clone(),
            metrics.clone(),
            in_flight.clone(),
            flush_settings(&config),
        )
        .with_failpoint(config.failpoint);
        flusher.recover().await;
        let public = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the public listener on {}", config.listen))?;
        let internal = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics listener on {addr}"))?,
            ),
            None => None,
        };
        let salts = Arc::new(Salts::default());
        // Before serving, so the first views already count their visitors; a store that
        // does not answer now is retried every minute in the background.
        if let Err(e) = salts.refresh(&store, visitors::today()).await {
            tracing::warn!(error = %e, "fetching the visitor salts failed; visitors count once the store answers");
        }
        let api = Arc::new(Api {
            salts,
            counter,
            store,
            in_flight,
            tick_gate: flusher.gate(),
            last_known: Default::default(),
            metrics,
            origins: config.allowed_origins.clone(),
            admin_token: config.admin_token.clone(),
            max_body: config.max_body_bytes,
            body_timeout: config.body_read_timeout,
            read_max_age: config.read_max_age,
            newsroom: config.newsroom.then(|| Newsroom::new(config.newsroom_auth.as_deref())),
            lifecycle: Arc::new(Lifecycle::default()),
            top_cache: TopCache::new(config.flush_interval),
            rate_limit: (config.rate_limit > 0).then(|| RateLimiter::new(config.rate_limit)),
            client_addr: ClientAddr::new(config.client_ip_header.clone(), config.trusted_proxies.clone()),
            bots: (!config.count_bots).then(BotFilter::new),
            signer: config.beacon_secret.clone(),
        });
        let fd_limit = raise_fd_limit();
        let max_connections = connection_cap(config.max_connections, fd_limit);
        if max_connections < config.max_connections {
            tracing::warn!(
                max_connections,
                fd_limit,
                "--max-connections lowered to what the open-files limit allows"
            );
        }
        let limits = ServerLimits {
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            max_connections,
            drain_timeout: config.drain_timeout,
        };
        Ok(App {
            api,
            flusher,
            public,
            internal,
            limits,
        })
    }

    /// The bound public address (useful with port 0).
    pub fn public_addr(&self) -> SocketAddr {
        self.public.local_addr().expect("a bound listener has an address")
    }

    /// The bound internal metrics address, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.internal.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` is cancelled, then stops in order and returns.
    pub async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App {
            api,
            flusher,
            public,
            internal,
            limits,
        } = self;
        let stop_serving = CancellationToken::new();
        let stop_flushing = CancellationToken::new();
        // The internal listener outlives the public one: through the drain and the final
        // flush, /healthz answers 200 and /readyz 503 `shutting_down` to the probes.
        let stop_probes = CancellationToken::new();
        let mut servers = JoinSet::new();
        let surface = Surface::Public {
            metrics: internal.is_none(),
        };
        servers.spawn(serve(public, api.clone(), surface, limits, stop_serving.clone()));
        let mut probes = JoinSet::new();
        if let Some(internal) = internal {
            probes.spawn(serve(
                internal,
                api.clone(),
                Surface::Internal,
                limits.with_max_connections(INTERNAL_MAX_CONNECTIONS),
                stop_probes.clone(),
            ));
        }
        let mut flush_task = tokio::spawn(flusher.run(stop_flushing.clone()));
        let top_task = match &api.store {
            Store::Redis(redis) => Some(tokio::spawn(
                redis
                    .clone()
                    .run_top_refresher(TOP_REFRESH_EVERY, stop_flushing.clone()),
            )),
            Store::Embedded(_) => None,
        };
        let salts_task = tokio::spawn(api.salts.clone().run(api.store.clone(), stop_flushing.clone()));
        tracing::info!(store = api.store.kind(), "serving");

        let early_exit = tokio::select! {
            _ = shutdown.cancelled() => None,
            done = servers.join_next() => done,
            Some(done) = probes.join_next() => Some(done),
            // The flusher only returns when told to: anything else is a bug, and a
            // service that counts without flushing must not look healthy.
            died = &mut flush_task => {
                api.lifecycle.close_ingest();
                stop_serving.cancel();
                stop_probes.cancel();
                stop_flushing.cancel();
                while servers.join_next().await.is_some() {}
                while probes.join_next().await.is_some() {}
                died.context("the flusher task failed")?.context("the flusher stopped")?;
                anyhow::bail!("the flusher stopped unexpectedly");
            }
        };
        api.lifecycle.begin_stop();
        stop_serving.cancel();
        while servers.join_next().await.is_some() {}
        api.lifecycle.close_ingest();
        stop_flushing.cancel();
        let kept = flush_task.await.context("the flusher task failed")?;
        salts_task.await.context("the visitor-salt refresher failed")?;
        if let Some(task) = top_task {
            task.await.context("the top-articles refresher failed")?;
        }
        stop_probes.cancel();
        while probes.join_next().await.is_some() {}
        match early_exit {
            Some(Err(e)) => Err(e).context("a listener task failed"),
            Some(Ok(())) => anyhow::bail!("a listener stopped unexpectedly"),
            None => {
                kept.context("stopping")?;
                tracing::info!("stopped");
                Ok(())
            }
        }
    }
}

/// Creates `dir` if needed and proves a file can be written in it.
fn ensure_writable(dir: &std::path::Path) -> anyhow::Result<()> {
    let probe = dir.join(".viewcounter-write-test");
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .and_then(|()| std::fs::remove_file(&probe));
    written.with_context(|| format!("the data directory {} is not writable", dir.display()))
}
