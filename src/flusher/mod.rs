//! Step 3 of the data flow: every `--flush-interval` the counter map is drained into
//! batches, which are made durable in the local journal (journal.rs: one write, one
//! fsync) and applied to the store. Draining and applying run side by side: a slow or
//! absent store delays acknowledgements, never the journal, so whatever was accepted
//! before the last tick is on disk. A batch the store did not acknowledge is retried
//! as it is, with the same id.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time;
use tokio_util::sync::CancellationToken;

use crate::clock::{unix_ms, Clock};
use crate::counter::{CounterMap, VisitorMarks};
use crate::failpoint::{self, Failpoint};
use crate::metrics::Metrics;
use crate::store::{Applied, Batch, BatchId, Store};

pub mod gate;
mod ids;
pub mod in_flight;
pub mod journal;
pub mod spill;

pub use gate::TickGate;
pub use ids::BatchIds;
pub use in_flight::{InFlight, Unacked};

use journal::{Journal, JournalError};

/// Articles per batch chunk on the embedded store: a big drain is split so each store
/// call stays small (Redis takes smaller ones: [`Store::batch_articles`]).
pub const CHUNK_ARTICLES: usize = 10_000;
/// The default `--journal-max-bytes`: 1 GiB.
pub const DEFAULT_JOURNAL_MAX_BYTES: u64 = 1 << 30;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// With nothing to flush, how often the store is pinged so `store_up` stays true to life.
const IDLE_PING: Duration = Duration::from_secs(5);

/// How the flusher works: the flush flags of the configuration.
#[derive(Debug, Clone)]
pub struct FlushSettings {
    /// How often the map is drained, journaled and applied (`--flush-interval`).
    pub interval: Duration,
    /// How often the visitor marks go with a drain (`--visitor-flush-interval`): each
    /// costs the Redis flush a few commands per article, so they are held longer.
    pub visitor_interval: Duration,
    /// How long the final flush waits for the store (`--final-flush-timeout`).
    pub final_timeout: Duration,
    /// The journal's size cap (`--journal-max-bytes`).
    pub journal_max_bytes: u64,
    /// Where the journal lives (`--data-dir`).
    pub data_dir: PathBuf,
    /// This process's id, the first part of its batch ids.
    pub instance: String,
}

impl FlushSettings {
    /// The defaults of the flags, with the journal in `data_dir`.
    pub fn new(data_dir: PathBuf, instance: String) -> Self {
        FlushSettings {
            interval: Duration::from_secs(1),
            visitor_interval: DEFAULT_VISITOR_FLUSH_INTERVAL,
            final_timeout: Duration::from_secs(5),
            journal_max_bytes: DEFAULT_JOURNAL_MAX_BYTES,
            data_dir,
            instance,
        }
    }
}

/// The default `--visitor-flush-interval`.
pub const DEFAULT_VISITOR_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// With this many visitor marks pending, the next tick takes them whatever
/// `--visitor-flush-interval` says: a drain's pass grows with the marks it takes, and
/// the journal write that makes a tick's counts durable waits for it (a burst of new
/// articles piled up a million marks, and the tick that took them ran for seconds).
pub const EAGER_VISITOR_MARKS: usize = 100_000;

/// A stop that could not keep every accepted count.
#[derive(Debug, thiserror::Error)]
#[error("{events} accepted counts could not be kept: the store did not take them and the journal could not be written")]
pub struct CountsLost {
    /// Events lost.
    pub events: u64,
}

/// Owns the flush loop: the drainer (map -> batches -> journal) and the applier
/// (batches -> store).
#[derive(Debug)]
pub struct Flusher {
    drainer: Drainer,
    applier: Applier,
    interval: Duration,
    final_timeout: Duration,
}

/// Whether the store and the journal work; `store_up` is 1 only while both do.
#[derive(Debug)]
struct Health {
    store: AtomicBool,
    journal: AtomicBool,
    metrics: Metrics,
}

impl Health {
    fn set(&self, which: &AtomicBool, ok: bool) {
        which.store(ok, Ordering::Relaxed);
        let up = self.store.load(Ordering::Relaxed) && self.journal.load(Ordering::Relaxed);
        self.metrics.store_up.set(i64::from(up));
    }
}

impl Flusher {
    /// A flusher over `counter` into `store`, stamping batches with the store's clock.
    pub fn new(
        counter: Arc<CounterMap>,
        store: Store,
        metrics: Metrics,
        in_flight: Arc<InFlight>,
        settings: FlushSettings,
    ) -> Self {
        let health = Arc::new(Health {
            store: AtomicBool::new(true),
            journal: AtomicBool::new(true),
            metrics: metrics.clone(),
        });
        metrics.journal_max_bytes.set(settings.journal_max_bytes as i64);
        let FlushSettings {
            interval,
            visitor_interval,
            final_timeout,
            journal_max_bytes,
            data_dir,
            instance,
        } = settings;
        Flusher {
            drainer: Drainer {
                counter,
                in_flight: in_flight.clone(),
                metrics: metrics.clone(),
                ids: Arc::new(BatchIds::new(instance)),
                clock: store.clock(),
                batch_articles: store.batch_articles(),
                data_dir,
                journal: Arc::new(Mutex::new(None)),
                unjournaled: Vec::new(),
                max_bytes: journal_max_bytes,
                visitor_interval,
                tick_interval: interval,
                visitors_sent_at: None,
                health: health.clone(),
                gate: Arc::new(TickGate::new(interval)),
                slow: false,
            },
            applier: Applier {
                store,
                metrics,
                in_flight,
                backoff: interval,
                interval,
                retry_at: None,
                retrying: false,
                store_up: None,
                failpoint: None,
                last_contact: None,
                health,
            },
            interval,
            final_timeout,
        }
    }

    /// The gate ingest waits at while a tick runs late (see [`gate`]).
    pub fn gate(&self) -> Arc<TickGate> {
        self.drainer.gate.clone()
    }

    /// Arms a test-only failpoint.
    pub fn with_failpoint(mut self, failpoint: Option<Failpoint>) -> Self {
        self.applier.failpoint = failpoint;
        self.drainer.slow = failpoint == Some(Failpoint::SlowTick);
        self
    }

    /// Drains, journals and applies every interval until `shutdown`, then makes the
    /// final flush. Errs when the stop could not keep every accepted count.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), CountsLost> {
        let queued = Notify::new();
        let Flusher {
            drainer,
            applier,
            interval,
            ..
        } = &mut self;
        let ticks = async {
            let mut tick = time::interval(*interval);
            tick.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => break,
                }
                // Not cancelled by shutdown: the drained batches must reach the queue.
                drainer.tick().await;
                queued.notify_one();
            }
        };
        let applies = async {
            loop {
                tokio::select! {
                    _ = queued.notified() => {}
                    _ = shutdown.cancelled() => break,
                }
                // A store call may hang up to its timeout; shutdown does not wait for it
                // (the batch stays queued and goes to the final flush).
                tokio::select! {
                    _ = applier.apply_round() => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        tokio::join!(ticks, applies);
        self.final_flush().await
    }

    /// Queues what an earlier run left (the journal, and spill files of older
    /// versions) and tries to apply it within the final-flush timeout, so it reaches
    /// the store before serving.
    pub async fn recover(&mut self) {
        for (file, batches) in spill::load_all(&self.drainer.data_dir, &self.drainer.metrics) {
            for batch in batches {
                self.drainer.in_flight.push(Unacked {
                    batch: Arc::new(batch),
                    spill_file: Some(file.clone()),
                    replayed: true,
                });
            }
        }
        self.drainer.tick().await;
        if !self.drainer.in_flight.is_empty() {
            let deadline = Instant::now() + self.final_timeout;
            self.applier.apply_until(deadline).await;
        }
    }

    /// One tick, awaited to the end: drain and journal, then apply what is queued
    /// (respecting the back-off after a failure).
    pub async fn flush_once(&mut self) {
        self.drainer.tick().await;
        self.applier.apply_round().await;
    }

    /// Drains what is left, journals it and applies everything within the final-flush
    /// timeout. What the store did not acknowledge stays in the journal for the next
    /// start; what neither took is counted, logged and reported.
    pub async fn final_flush(&mut self) -> Result<(), CountsLost> {
        let deadline = Instant::now() + self.final_timeout;
        // Past the journal's cap too, and every visitor mark: nothing will drain the map after this.
        self.drainer.max_bytes = u64::MAX;
        self.drainer.tick_taking(VisitorMarks::Take).await;
        if self.applier.apply_until(deadline).await {
            self.drainer.tick().await; // truncates the journal
            tracing::info!("final flush done");
            return Ok(());
        }
        if !self.drainer.unjournaled.is_empty() {
            // The disk may have room again: one more try.
            self.drainer.tick().await;
        }
        let queued = self.drainer.in_flight.snapshot();
        let lost: u64 = self.drainer.unjournaled.iter().map(|b| b.events()).sum();
        if lost > 0 {
            tracing::error!(
                events = lost,
                "store and journal both failed at shutdown; these accepted counts are lost"
            );
            return Err(CountsLost { events: lost });
        }
        tracing::warn!(
            batches = queued.len(),
            events = queued.iter().map(|u| u.batch.events()).sum::<u64>(),
            "store unreachable at shutdown; the journal keeps the pending counts for the next start"
        );
        Ok(())
    }
}

/// The counter map -> batches -> journal half of the flusher.
#[derive(Debug)]
struct Drainer {
    counter: Arc<CounterMap>,
    in_flight: Arc<InFlight>,
    metrics: Metrics,
    ids: Arc<BatchIds>,
    clock: Arc<dyn Clock>,
    /// Most articles in one batch ([`Store::batch_articles`]).
    batch_articles: usize,
    data_dir: PathBuf,
    /// `None` until opened (lazily, so an open that fails is retried at the next tick).
    // std Mutex: only locked inside blocking tasks, by this drainer.
    journal: Arc<Mutex<Option<Journal>>>,
    /// Drained batches the journal does not hold yet (its last write failed).
    unjournaled: Vec<Arc<Batch>>,
    max_bytes: u64,
    visitor_interval: Duration,
    /// `--flush-interval`: how often the drainer ticks.
    tick_interval: Duration,
    /// When the tick that last took the visitor marks along began.
    visitors_sent_at: Option<Instant>,
    health: Arc<Health>,
    /// Marks each tick running, so ingest waits while one runs late.
    gate: Arc<TickGate>,
    /// [`Failpoint::SlowTick`] is armed.
    slow: bool,
}

/// True when a tick beginning at `now` takes the visitor marks along: once
/// `--visitor-flush-interval` has passed since the tick that last took them began,
/// counting a tick within half a flush interval of it. Ticks come one flush interval
/// apart, give or take the scheduler; a tick a hair early must not hold the marks a
/// whole interval longer (with both intervals equal they went every other tick).
fn visitors_due(sent_at: Option<Instant>, now: Instant, visitor_interval: Duration, tick_interval: Duration) -> bool {
    sent_at.is_none_or(|at| now.saturating_duration_since(at) + tick_interval / 2 >= visitor_interval)
}

/// True when so many visitor marks are pending that the next tick takes them early.
fn marks_pile_up(pending: usize) -> bool {
    pending >= EAGER_VISITOR_MARKS
}

/// What one tick did, handed back from its blocking task.
struct TickDone {
    unjournaled: Vec<Arc<Batch>>,
    journal: Result<u64, JournalError>,
    /// A record was written and synced.
    wrote: bool,
    full: bool,
}

impl Drainer {
    /// Drains the map into the queue and the journal, off the runtime's threads; the
    /// visitor marks go along once `--visitor-flush-interval` has passed.
    async fn tick(&mut self) {
        let now = Instant::now();
        let due = visitors_due(self.visitors_sent_at, now, self.visitor_interval, self.tick_interval)
            || marks_pile_up(self.counter.visitor_marks());
        let marks = if due { VisitorMarks::Take } else { VisitorMarks::Keep };
        if self.tick_taking(marks).await {
            self.visitors_sent_at = Some(now);
        }
    }

    /// [`Drainer::tick`], taking the visitor marks along or not as told; true when
    /// they were taken.
    async fn tick_taking(&mut self, marks: VisitorMarks) -> bool {
        self.metrics.pending_keys.set(self.counter.len() as i64);
        let job = TickJob {
            counter: self.counter.clone(),
            in_flight: self.in_flight.clone(),
            ids: self.ids.clone(),
            clock: self.clock.clone(),
            batch_articles: self.batch_articles,
            journal: self.journal.clone(),
            data_dir: self.data_dir.clone(),
            max_bytes: self.max_bytes,
            marks,
            unjournaled: std::mem::take(&mut self.unjournaled),
        };
        let running = self.gate.begin();
        let slow = self.slow;
        let done = match tokio::task::spawn_blocking(move || {
            if slow {
                std::thread::sleep(failpoint::SLOW_TICK);
            }
            job.run()
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "the drain task failed");
                return false;
            }
        };
        drop(running);
        self.unjournaled = done.unjournaled;
        let took_marks = marks == VisitorMarks::Take && !done.full;
        self.counter.refuse_new_keys(done.full);
        match done.journal {
            Ok(bytes) => {
                self.metrics.journal_bytes.set(bytes as i64);
                if done.wrote {
                    self.metrics.journal_writes.inc();
                }
                if !self.health.journal.swap(true, Ordering::Relaxed) {
                    tracing::info!("journal writable again");
                }
                self.health.set(&self.health.journal, true);
            }
            Err(e) => {
                if self.health.journal.load(Ordering::Relaxed) {
                    tracing::error!(error = %e, "journal write failed; pending counts are kept in memory and retried every interval");
                }
                self.health.set(&self.health.journal, false);
            }
        }
        self.metrics.unacked_events.set(self.in_flight.events() as i64);
        let age = self
            .in_flight
            .oldest_flushed_at_ms()
            .map_or(0, |t| self.clock.now_ms().saturating_sub(t));
        self.metrics.oldest_unacked_age.set(age as f64 / 1000.0);
        took_marks
    }
}

/// The blocking part of a tick.
struct TickJob {
    counter: Arc<CounterMap>,
    in_flight: Arc<InFlight>,
    ids: Arc<BatchIds>,
    clock: Arc<dyn Clock>,
    batch_articles: usize,
    journal: Arc<Mutex<Option<Journal>>>,
    data_dir: PathBuf,
    max_bytes: u64,
    marks: VisitorMarks,
    unjournaled: Vec<Arc<Batch>>,
}

impl TickJob {
    fn run(mut self) -> TickDone {
        let journal = self.journal.clone();
        let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
        if !self.unjournaled.is_empty() {
            // What the store acknowledged meanwhile need not be written any more.
            self.in_flight.keep_queued(&mut self.unjournaled);
        }
        let mut opened = self.open(&mut journal);
        if let Ok(j) = opened.as_mut() {
            if self.in_flight.is_empty() && self.unjournaled.is_empty() && !j.is_empty() {
                if let Err(e) = j.truncate() {
                    tracing::warn!(error = %e, "could not empty the journal; it is emptied later");
                }
            }
        }
        let full = opened.as_ref().is_ok_and(|j| j.len() >= self.max_bytes);
        if !full {
            self.drain();
        }
        let wrote = !self.unjournaled.is_empty();
        let written = opened.and_then(|j| j.append(&self.unjournaled).map(|()| j.len()));
        if written.is_ok() {
            self.unjournaled.clear();
        }
        TickDone {
            unjournaled: self.unjournaled,
            wrote: wrote && written.is_ok(),
            journal: written,
            full,
        }
    }

    /// Opens the journal if it is not open; what an earlier run left in it is queued.
    fn open<'j>(&self, journal: &'j mut Option<Journal>) -> Result<&'j mut Journal, JournalError> {
        if journal.is_none() {
            let (opened, found) = Journal::open(&self.data_dir)?;
            if found.torn_bytes > 0 {
                tracing::warn!(
                    bytes = found.torn_bytes,
                    "the journal ended in a record cut short (a crash while writing it); that record is dropped"
                );
            }
            if !found.batches.is_empty() {
                tracing::info!(batches = found.batches.len(), "replaying the journal");
            }
            for batch in found.batches {
                self.in_flight.push(Unacked {
                    batch: Arc::new(batch),
                    spill_file: None,
                    replayed: true,
                });
            }
            *journal = Some(opened);
        }
        Ok(journal.as_mut().expect("opened above"))
    }

    /// Copies the pending deltas into batches with no lock a reader waits on, then
    /// queues each batch while subtracting it from the map (one atomic a counter), so
    /// a read sees each count once: pending before, queued after.
    fn drain(&mut self) {
        let in_flight = self.in_flight.clone();
        let _draining = in_flight.begin_drain();
        let articles = self.counter.copy_pending(self.marks);
        if articles.is_empty() {
            return;
        }
        let flushed_at_ms = self.clock.now_ms();
        let mut batches = Vec::with_capacity(articles.len().div_ceil(self.batch_articles));
        let mut rest = articles.into_iter();
        for chunk in 0.. {
            let articles: Vec<_> = rest.by_ref().take(self.batch_articles).collect();
            if articles.is_empty() {
                break;
            }
            batches.push(Unacked {
                batch: Arc::new(Batch {
                    id: self.ids.next(chunk),
                    flushed_at_ms,
                    articles,
                }),
                spill_file: None,
                replayed: false,
            });
        }
        // One chunk at a time, each queued while its deltas leave the map: an article
        // is in one chunk only, and reads see each of its counts once, with no lock
        // held for the subtractions (see `InFlight::settle_into_queue`).
        for u in batches {
            let queued = self
                .in_flight
                .settle_into_queue(u, |deltas| self.counter.settle(deltas));
            self.unjournaled.push(queued);
        }
    }
}

/// The batches -> store half of the flusher.
#[derive(Debug)]
struct Applier {
    store: Store,
    metrics: Metrics,
    in_flight: Arc<InFlight>,
    interval: Duration,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// The last round failed: the next one retries.
    retrying: bool,
    store_up: Option<bool>,
    failpoint: Option<Failpoint>,
    last_contact: Option<Instant>,
    health: Arc<Health>,
}

impl Applier {
    /// Applies what is queued (respecting the back-off after a failure), or pings the
    /// store when nothing is.
    async fn apply_round(&mut self) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if self.in_flight.is_empty() {
            return self.ping_when_idle().await;
        }
        if self.retrying {
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

    /// Applies the queued batches, [`Store::batches_at_once`] at a time, in order where
    /// it matters ([`may_start`]); starts no more after a failure. Returns true when all
    /// of them were acknowledged.
    async fn apply_queued(&mut self) -> bool {
        let mut queue = self.in_flight.snapshot().into_iter().peekable();
        let mut running = JoinSet::new();
        let mut error = None;
        loop {
            while error.is_none() && running.len() < self.store.batches_at_once() {
                let Some(u) = queue.next_if(|u| may_start(running.len(), &u.batch)) else {
                    break;
                };
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
        if u.replayed {
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
        self.retrying = false;
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
        self.retrying = true;
        self.set_store_up(false, Some(error));
    }

    fn set_store_up(&mut self, up: bool, error: Option<&str>) {
        self.last_contact = Some(Instant::now());
        self.health.set(&self.health.store, up);
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
            // lost stays queued (and journaled), and its id makes a later replay exact.
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
}
/// Whether `batch` may start while `running` earlier batches are still being applied
/// (Redis applies two at once). A batch that carries signed metadata waits for every
/// batch before it: a signed value replaces the stored one, so an older value landing
/// after a newer one (two batches racing, or a retry) would move a section back.
fn may_start(running: usize, batch: &Batch) -> bool {
    running == 0 || !batch.carries_signed_meta()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::Counts;
    use crate::event::{ArticleId, Meta};
    use crate::store::ArticleDelta;

    #[test]
    fn visitor_marks_go_at_the_first_tick_of_their_interval() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        assert!(
            visitors_due(None, t0, ms(10_000), ms(1_000)),
            "the first tick takes them"
        );
        // Equal intervals: every tick, also one a hair early (they went every other tick).
        let tick = ms(100);
        assert!(visitors_due(Some(t0), t0 + ms(99), tick, tick));
        assert!(visitors_due(Some(t0), t0 + ms(100), tick, tick));
        assert!(!visitors_due(Some(t0), t0 + ms(40), tick, tick));
        // Ten ticks apart: not at the ninth, yes at the tenth, early or late.
        let (visitors, tick) = (ms(10_000), ms(1_000));
        assert!(!visitors_due(Some(t0), t0 + ms(9_000), visitors, tick));
        assert!(visitors_due(Some(t0), t0 + ms(9_990), visitors, tick));
        assert!(visitors_due(Some(t0), t0 + ms(10_020), visitors, tick));
    }

    #[test]
    fn marks_that_pile_up_go_with_the_next_tick() {
        assert!(!marks_pile_up(EAGER_VISITOR_MARKS - 1));
        assert!(marks_pile_up(EAGER_VISITOR_MARKS));
    }

    #[test]
    fn a_drain_takes_every_pending_mark_in_its_one_pass() {
        let map = CounterMap::new(1_000, crate::event::Networks::default());
        for i in 0..50u64 {
            map.record_visitor(&format!("a{i:02}"), (20_000, i));
        }
        map.record_all(&[crate::event::Event::view("a00")]).unwrap();
        assert_eq!(map.visitor_marks(), 50);
        let drained = map.copy_pending(VisitorMarks::Keep);
        assert!(drained.iter().all(|d| d.visitors.is_empty()), "kept");
        let drained = map.copy_pending(VisitorMarks::Take);
        assert_eq!(drained.len(), 50, "a delta of marks alone for each marked article");
        assert_eq!(drained.iter().map(|d| d.visitors.len()).sum::<usize>(), 50);
        assert!(drained.windows(2).all(|w| w[0].article < w[1].article), "sorted");
        assert_eq!(map.visitor_marks(), 0);
    }

    fn batch(section: Option<&str>, signed: bool) -> Batch {
        Batch {
            id: BatchId {
                instance: "t".into(),
                epoch_ms: 1,
                seq: 1,
                chunk: 0,
            },
            flushed_at_ms: 1,
            articles: vec![ArticleDelta {
                article: ArticleId::parse("a").unwrap(),
                counts: Counts::of_views(1),
                meta: Meta {
                    section: section.map(Into::into),
                    signed,
                    ..Meta::default()
                },
                visitors: Vec::new(),
            }],
        }
    }

    #[test]
    fn a_batch_with_signed_metadata_waits_for_every_batch_before_it() {
        let signed = batch(Some("world"), true);
        assert!(!may_start(1, &signed), "an earlier batch still runs");
        assert!(may_start(0, &signed));
        for unsigned in [batch(Some("world"), false), batch(None, false)] {
            assert!(may_start(1, &unsigned), "unsigned metadata only fills what is missing");
        }
    }
}
