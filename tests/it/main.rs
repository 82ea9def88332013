//! The integration tests: one binary (linked once), a module per area. Every test
//! talks to the service through real sockets, real processes and a real
//! redis-server started on a free port by `support`.

mod support;

mod browser;
mod contract;
mod counting;
mod crash_loss;
mod http_edges;
mod lifecycle;
mod limits;
mod memory;
mod newsroom;
mod observability;
mod openapi;
mod read_cache;
mod redis_cluster;
mod redis_faults;
mod redis_spill;
mod redis_store;
mod redis_top;
mod series;
mod top_windows;
mod trust;
mod visitors;
