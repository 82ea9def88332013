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
//! reads (http::reads) = store totals + unacknowledged batches + pending counts
//! shutdown: stop accepting -> drain in-flight -> final flush -> spill file if the store is away
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod clock;
pub mod config;
pub mod counter;
pub mod event;
pub mod failpoint;
pub mod fingerprint;
pub mod flusher;
pub mod http;
pub mod in_flight;
pub mod logging;
pub mod metrics;
pub mod shutdown;
pub mod spill;
pub mod store;
pub mod top;
pub mod visitors;

pub use app::App;
pub use config::Config;
