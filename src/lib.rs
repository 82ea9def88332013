//! viewcounter: a view-and-share counter for news sites.
//!
//! The path an event takes, top to bottom:
//!
//! ```text
//! browser beacon ──► http::server ──► http::routes ──► http::ingest
//!                                                        │  event::RawEvent::validate
//!                                                        ▼
//!                                              counter::CounterMap::record   (dashmap + atomics)
//!                                                        │  every --flush-interval
//!                                                        ▼
//!                                              flusher::Flusher::flush_once  (drain -> Batch, retry as is)
//!                                                        │
//!                                                        ▼
//!                                              store::Store::apply           (embedded redb | Redis)
//!
//! reads (http::reads) = store totals + unacknowledged batches (flusher::InFlight) + pending counts
//! durability: each tick's drain is appended to the journal (flusher::journal) before
//! or while it is applied; a restart replays it exactly once
//! shutdown: stop accepting -> drain in-flight -> final flush -> what the store did not
//! take stays in the journal
//! ```
//!
//! The modules below are listed in that order: an event's way in, its way to the store,
//! its way back out, then the wiring.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The way in: a beacon becomes validated events, a visitor mark, a pending count.
pub mod event;
pub mod visitors;
pub mod counter;
// Counts as every layer exchanges them: pending, drained, stored, shown.
pub mod counts;
// The way to the store: drained batches, journaled, queued until acknowledged (the
// flusher owns its journal, its queue of unacknowledged batches and the old spill files).
pub mod flusher;
pub mod store;
// The way out: rankings, and the HTTP surface (ingest, reads, newsroom, admin, ops).
pub mod top;
pub mod http;
// Wiring and shared pieces.
pub mod app;
pub mod config;
pub mod clock;
pub mod shutdown;
pub mod metrics;
pub mod logging;
pub mod fingerprint;
pub mod failpoint;

pub use app::App;
pub use config::Config;
