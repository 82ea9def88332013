//! Step 3 of the data flow: every `--flush-interval`, drain the counter map into a
//! batch and apply it to the store. A batch the store did not acknowledge is retried
//! as it is, with the same id, while new events accumulate for the next one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time;
use tokio_util::sync::CancellationToken;

use crate::counter::CounterMap;
use crate::failpoint::{self, Failpoint};
use crate::in_flight::{InFlight, Unacked};
use crate::metrics::Metrics;
use crate::spill;
use crate::store::{Applied, Batch, BatchId, Store};

mod ids;

pub use ids::{unix_ms, BatchIds};

/// Articles per batch chunk: a big drain is split so each store call stays small.
pub const CHUNK_ARTICLES: usize = 10_000;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// With nothing to flush, how often the store is pinged so `store_up` stays true to life.
const IDLE_PING: Duration = Duration::from_secs(5);

/// Owns the flush loop.
#[derive(Debug)]
pub struct Flusher {
    counter: Arc<CounterMap>,
    store: Store,
    metrics: Metrics,
    in_flight: Arc<InFlight>,
    ids: BatchIds,
    interval: Duration,
    data_dir: PathBuf,
    final_timeout: Duration,
    backoff: Duration,
    retry_at: Option<Instant>,
    store_up: Option<bool>,
    failpoint: Option<Failpoint>,
    last_contact: Option<Instant>,
}

impl Flusher {
    /// A flusher over `counter` into `store`; spill files go to `data_dir`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        counter: Arc<CounterMap>,
        store: Store,
        metrics: Metrics,
        in_flight: Arc<InFlight>,
        instance: String,
        interval: Duration,
        data_dir: PathBuf,
        final_timeout: Duration,
    ) -> Self {
        Flusher {
            counter,
            store,
            metrics,
            in_flight,
            ids: BatchIds::new(instance),
            interval,
            data_dir,
            final_timeout,
            backoff: interval,
            retry_at: None,
            store_up: None,
            failpoint: None,
            last_contact: None,
        }
    }

    /// Arms a test-only failpoint.
    pub fn with_failpoint(mut self, failpoint: Option<Failpoint>) -> Self {
        self.failpoint = failpoint;
        self
    }

    /// Flushes every interval until `shutdown`, then makes the final flush (or spills).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = time::interval(self.interval);
        tick.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            // A store call may hang up to its timeout; shutdown does not wait for it
            // (the batch stays queued and goes to the final flush).
            tokio::select! {
                _ = self.flush_once() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        self.final_flush().await;
    }

    /// Loads spill files left by an earlier run into the queue and tries to apply
    /// them within the final-flush timeout, so they reach the store before serving.
    pub async fn replay_spills(&mut self) {
        for (file, batches) in spill::load_all(&self.data_dir, &self.metrics) {
            for batch in batches {
                self.in_flight.push(Unacked {
                    batch: Arc::new(batch),
                    spill_file: Some(file.clone()),
                });
            }
        }
        if !self.in_flight.is_empty() {
            let deadline = Instant::now() + self.final_timeout;
            self.apply_until(deadline).await;
        }
    }

    /// One tick: drain into a new batch unless one is still unacknowledged, then
    /// apply what is queued (respecting the back-off after a failure).
    pub async fn flush_once(&mut self) {
        self.metrics.pending_keys.set(self.counter.len() as i64);
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if self.in_flight.is_empty() {
            self.drain_into_queue();
            if self.in_flight.is_empty() {
                return self.ping_when_idle().await;
            }
        } else {
            self.metrics.flush_retries.inc();
        }
        self.apply_queued().await;
    }

    async fn ping_when_idle(&mut self) {
        if self.last_contact.is_some_and(|t| t.elapsed() < IDLE_PING) {
            return;
        }
        match self.store.ping().await {
            Ok(()) => self.set_store_up(true, None),
            Err(e) => self.set_store_up(false, Some(&e.to_string())),
        }
    }

    fn drain_into_queue(&mut self) {
        let (counter, ids) = (&self.counter, &mut self.ids);
        self.in_flight.push_drained(|| {
            let articles = counter.drain();
            let flushed_at_ms = unix_ms();
            articles
                .chunks(CHUNK_ARTICLES)
                .enumerate()
                .map(|(i, chunk)| Unacked {
                    batch: Arc::new(Batch {
                        id: ids.next(i as u32),
                        flushed_at_ms,
                        articles: chunk.to_vec(),
                    }),
                    spill_file: None,
                })
                .collect()
        });
        self.metrics.unacked_events.set(self.in_flight.events() as i64);
    }

    /// Applies the queued batches, [`Store::batches_at_once`] at a time; starts no
    /// more after a failure. Returns true when all of them were acknowledged.
    async fn apply_queued(&mut self) -> bool {
        let mut queue = self.in_flight.snapshot().into_iter();
        let mut running = JoinSet::new();
        let mut error = None;
        loop {
            while error.is_none() && running.len() < self.store.batches_at_once() {
                let Some(u) = queue.next() else { break };
                let store = self.store.clone();
                running.spawn(async move {
                    let started = Instant::now();
                    let result = store.apply(&u.batch).await;
                    (u, started.elapsed(), result)
                });
            }
            let Some(joined) = running.join_next().await else { break };
            match joined {
                Ok((u, took, result)) => {
                    self.metrics.flush_duration.observe(took.as_secs_f64());
                    match result {
                        Ok(outcome) => self.applied(&u, outcome),
                        Err(e) => {
                            self.metrics.flush_batches.with_label_values(&["error"]).inc();
                            error.get_or_insert(e.to_string());
                        }
                    }
                }
                // A panic in the store's code: the batch stays queued.
                Err(e) => {
                    error.get_or_insert(format!("flush task failed: {e}"));
                }
            }
        }
        match error {
            Some(e) => {
                self.failed(&e);
                false
            }
            None => true,
        }
    }

    fn applied(&mut self, u: &Unacked, outcome: Applied) {
        if u.spill_file.is_some() {
            failpoint::hit(self.failpoint, Failpoint::ExitAfterReplayApply);
        }
        self.acknowledged(&u.batch.id, outcome);
    }

    fn acknowledged(&mut self, id: &BatchId, outcome: Applied) {
        let result = match outcome {
            Applied::Applied => "ok",
            Applied::Duplicate | Applied::Partial => "duplicate",
        };
        self.metrics.flush_batches.with_label_values(&[result]).inc();
        self.metrics.last_flush.set(unix_ms() as f64 / 1000.0);
        if let Some(file) = self.in_flight.remove(id) {
            spill::remove(&file);
        }
        self.metrics.unacked_events.set(self.in_flight.events() as i64);
        self.backoff = self.interval;
        self.retry_at = None;
        self.set_store_up(true, None);
    }

    fn failed(&mut self, error: &str) {
        tracing::warn!(
            error,
            retry_in_ms = self.backoff.as_millis() as u64,
            "flush failed; batch kept for retry"
        );
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.set_store_up(false, Some(error));
    }

    fn set_store_up(&mut self, up: bool, error: Option<&str>) {
        self.last_contact = Some(Instant::now());
        self.metrics.store_up.set(i64::from(up));
        if self.store_up != Some(up) {
            match (up, error) {
                (true, _) => tracing::info!(store = self.store.kind(), "store up"),
                (false, e) => tracing::error!(store = self.store.kind(), error = e, "store down"),
            }
        }
        self.store_up = Some(up);
    }

    async fn apply_until(&mut self, deadline: Instant) -> bool {
        loop {
            self.retry_at = None;
            // The deadline also cuts a store call that hangs: a batch whose answer is
            // lost stays queued (and spilled), and its id makes a later replay exact.
            match time::timeout_at(deadline.into(), self.apply_queued()).await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(_) => return false,
            }
            let wait = self.backoff.min(deadline.saturating_duration_since(Instant::now()));
            if wait.is_zero() {
                return false;
            }
            time::sleep(wait).await;
        }
    }

    /// Drains what is left and applies everything within the final-flush timeout;
    /// whatever the store did not acknowledge is written to a spill file.
    pub async fn final_flush(&mut self) {
        let deadline = Instant::now() + self.final_timeout;
        // New deltas join the queue even behind an unacknowledged batch: nothing
        // else will drain them.
        self.drain_into_queue();
        if self.apply_until(deadline).await {
            tracing::info!("final flush done");
            return;
        }
        let queue = self.in_flight.snapshot();
        let batches: Vec<Batch> = queue.iter().map(|u| (*u.batch).clone()).collect();
        match spill::write(&self.data_dir, &self.ids.label(), &batches) {
            Ok(path) => {
                self.metrics.spill_files.with_label_values(&["written"]).inc();
                tracing::warn!(file = %path.display(), batches = batches.len(), "store unreachable at shutdown; pending counts spilled");
                for old in queue.iter().filter_map(|u| u.spill_file.as_ref()) {
                    spill::remove(old);
                }
            }
            Err(e) => tracing::error!(error = %e, "could not write the spill file; pending counts are lost"),
        }
    }
}
