//! Every metric in one struct, registered once; `render()` is the /metrics body.
//! Labels are bounded: route templates, event types, reasons — never ids or raw paths.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The service's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Accepted events by type (`view`, `share`).
    pub events: IntCounterVec,
    /// `events{type="view"}`, resolved once: the hot path does no label lookup.
    pub events_view: IntCounter,
    /// `events{type="share"}`, resolved once.
    pub events_share: IntCounter,
    /// Refused events by reason (the error code).
    pub rejected: IntCounterVec,
    /// Valid events not counted, by reason (`bot`).
    pub ignored: IntCounterVec,
    /// `ignored{reason="bot"}`, resolved once.
    pub ignored_bot: IntCounter,
    /// Optional metadata fields dropped as invalid, by field.
    pub fields_dropped: IntCounterVec,
    /// Requests by route template and status.
    pub http_requests: IntCounterVec,
    /// Request latency by route template.
    pub http_duration: HistogramVec,
    /// `http_requests{route="/v1/events",status="202"}`, resolved once: an accepted
    /// beacon does no label lookup.
    pub ingest_accepted: IntCounter,
    /// `http_duration{route="/v1/events"}`, resolved once.
    pub ingest_duration: Histogram,
    /// Distinct keys in the pending map.
    pub pending_keys: IntGauge,
    /// `--max-pending-keys`.
    pub pending_capacity: IntGauge,
    /// Time to apply one batch to the store.
    pub flush_duration: Histogram,
    /// Batches by result (`ok`, `error`, `duplicate`).
    pub flush_batches: IntCounterVec,
    /// Retries of an unacknowledged batch.
    pub flush_retries: IntCounter,
    /// Events held in batches not yet acknowledged by the store.
    pub unacked_events: IntGauge,
    /// 1 while the last store operation succeeded.
    pub store_up: IntGauge,
    /// Unix time of the last acknowledged flush.
    pub last_flush: Gauge,
    /// Spill files by action (`written`, `replayed`, `set_aside`).
    pub spill_files: IntCounterVec,
    /// Open connections by listener (`public`, `internal`).
    pub open_connections: IntGaugeVec,
    /// Failed accepts (out of descriptors, a reset before accept).
    pub accept_errors: IntCounter,
    /// Articles held in the in-memory rankings (at most `--max-articles`).
    pub tracked_articles: IntGauge,
    /// Always 1; carries the version.
    pub build_info: IntGaugeVec,
    /// The runtime's worker threads (`--worker-threads`, else one per CPU it may use).
    pub worker_threads: IntGauge,
    /// Bytes in the local journal (batches not yet acknowledged by the store).
    pub journal_bytes: IntGauge,
    /// `--journal-max-bytes`.
    pub journal_max_bytes: IntGauge,
    /// Records written and synced to the journal (one a flush tick with something drained).
    pub journal_writes: IntCounter,
    /// Ingest requests held back while a flush tick ran past the flush interval.
    pub ingest_held: IntCounter,
    /// Age of the oldest batch the store has not acknowledged (0 when none waits).
    pub oldest_unacked_age: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const FLUSH_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

impl Metrics {
    /// Registers every metric (and the process collector) in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let events = IntCounterVec::new(
            Opts::new("viewcounter_events_total", "Accepted events by type"),
            &["type"],
        )
        .unwrap();
        let ignored = IntCounterVec::new(
            Opts::new(
                "viewcounter_events_ignored_total",
                "Valid events not counted (automated clients), by reason",
            ),
            &["reason"],
        )
        .unwrap();
        let http_requests = IntCounterVec::new(
            Opts::new("viewcounter_http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .unwrap();
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "viewcounter_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .unwrap();
        let m = Metrics {
            events_view: events.with_label_values(&["view"]),
            events_share: events.with_label_values(&["share"]),
            events,
            ignored_bot: ignored.with_label_values(&["bot"]),
            ignored,
            fields_dropped: IntCounterVec::new(
                Opts::new(
                    "viewcounter_event_fields_dropped_total",
                    "Optional metadata fields dropped as invalid (the event counted without them), by field",
                ),
                &["field"],
            )
            .unwrap(),
            rejected: IntCounterVec::new(
                Opts::new("viewcounter_events_rejected_total", "Refused events by reason"),
                &["reason"],
            )
            .unwrap(),
            ingest_accepted: http_requests.with_label_values(&["/v1/events", "202"]),
            ingest_duration: http_duration.with_label_values(&["/v1/events"]),
            http_requests,
            http_duration,
            pending_keys: IntGauge::new("viewcounter_pending_keys", "Distinct keys in the pending map").unwrap(),
            pending_capacity: IntGauge::new("viewcounter_pending_keys_capacity", "Capacity of the pending map")
                .unwrap(),
            flush_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "viewcounter_flush_duration_seconds",
                    "Time to apply one batch to the store",
                )
                .buckets(FLUSH_BUCKETS.to_vec()),
            )
            .unwrap(),
            flush_batches: IntCounterVec::new(
                Opts::new("viewcounter_flush_batches_total", "Flushed batches by result"),
                &["result"],
            )
            .unwrap(),
            flush_retries: IntCounter::new("viewcounter_flush_retries_total", "Retries of unacknowledged batches")
                .unwrap(),
            unacked_events: IntGauge::new(
                "viewcounter_unacked_events",
                "Events in batches the store has not acknowledged",
            )
            .unwrap(),
            store_up: IntGauge::new("viewcounter_store_up", "1 while the store answers").unwrap(),
            last_flush: Gauge::new(
                "viewcounter_last_flush_timestamp_seconds",
                "Unix time of the last acknowledged flush",
            )
            .unwrap(),
            spill_files: IntCounterVec::new(
                Opts::new("viewcounter_spill_files_total", "Spill files by action"),
                &["action"],
            )
            .unwrap(),
            open_connections: IntGaugeVec::new(
                Opts::new("viewcounter_open_connections", "Open connections by listener"),
                &["listener"],
            )
            .unwrap(),
            accept_errors: IntCounter::new("viewcounter_accept_errors_total", "Failed accepts").unwrap(),
            tracked_articles: IntGauge::new(
                "viewcounter_tracked_articles",
                "Articles held in the in-memory rankings",
            )
            .unwrap(),
            build_info: IntGaugeVec::new(Opts::new("viewcounter_build_info", "Build information"), &["version"])
                .unwrap(),
            worker_threads: IntGauge::new(
                "viewcounter_worker_threads",
                "Threads serving requests (the runtime's workers)",
            )
            .unwrap(),
            journal_bytes: IntGauge::new("viewcounter_journal_bytes", "Bytes in the local journal").unwrap(),
            journal_max_bytes: IntGauge::new("viewcounter_journal_max_bytes", "Cap of the local journal").unwrap(),
            journal_writes: IntCounter::new(
                "viewcounter_journal_writes_total",
                "Records written and synced to the local journal",
            )
            .unwrap(),
            ingest_held: IntCounter::new(
                "viewcounter_ingest_held_total",
                "Ingest requests held back while a flush tick ran past the flush interval",
            )
            .unwrap(),
            oldest_unacked_age: Gauge::new(
                "viewcounter_oldest_unacked_age_seconds",
                "Age of the oldest batch the store has not acknowledged",
            )
            .unwrap(),
            registry,
        };
        m.register_all();
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for r in ["ok", "error", "duplicate"] {
            m.flush_batches.with_label_values(&[r]);
        }
        for l in ["public", "internal"] {
            m.open_connections.with_label_values(&[l]);
        }
        for f in crate::event::META_FIELDS {
            m.fields_dropped.with_label_values(&[f]);
        }
        for a in ["written", "replayed", "set_aside"] {
            m.spill_files.with_label_values(&[a]);
        }
        m
    }

    fn register_all(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.events.clone()),
            Box::new(self.rejected.clone()),
            Box::new(self.ignored.clone()),
            Box::new(self.fields_dropped.clone()),
            Box::new(self.http_requests.clone()),
            Box::new(self.http_duration.clone()),
            Box::new(self.pending_keys.clone()),
            Box::new(self.pending_capacity.clone()),
            Box::new(self.flush_duration.clone()),
            Box::new(self.flush_batches.clone()),
            Box::new(self.flush_retries.clone()),
            Box::new(self.unacked_events.clone()),
            Box::new(self.store_up.clone()),
            Box::new(self.last_flush.clone()),
            Box::new(self.spill_files.clone()),
            Box::new(self.open_connections.clone()),
            Box::new(self.accept_errors.clone()),
            Box::new(self.tracked_articles.clone()),
            Box::new(self.build_info.clone()),
            Box::new(self.worker_threads.clone()),
            Box::new(self.journal_bytes.clone()),
            Box::new(self.journal_max_bytes.clone()),
            Box::new(self.journal_writes.clone()),
            Box::new(self.ingest_held.clone()),
            Box::new(self.oldest_unacked_age.clone()),
        ];
        for c in collectors {
            self.registry.register(c).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        self.registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process collector registers once");
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
