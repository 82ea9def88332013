//! The HTTP side: `server` accepts connections and drains them at shutdown, `routes`
//! matches method and path, and one module per area answers.

pub mod admin;
pub mod cache;
pub mod client;
pub mod error;
pub mod ingest;
pub mod last_known;
pub mod newsroom;
pub mod ops;
pub mod rate_limit;
pub mod reads;
pub mod routes;
pub mod script;
pub mod series;
pub mod server;
pub mod top;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::config::AllowedOrigins;
use crate::counter::CounterMap;
use crate::flusher::InFlight;
use crate::metrics::Metrics;
use crate::shutdown::Lifecycle;
use crate::store::Store;

pub use error::ApiError;

/// Every response body: small and fully buffered.
pub type Body = Full<Bytes>;

/// What the handlers share.
#[derive(Debug)]
pub struct Api {
    /// Pending counts (the hot path).
    pub counter: Arc<CounterMap>,
    /// The backend.
    pub store: Store,
    /// Batches not yet acknowledged, which reads add in.
    pub in_flight: Arc<InFlight>,
    /// Where ingest waits while a flush tick runs late (flusher/gate.rs).
    pub tick_gate: Arc<crate::flusher::TickGate>,
    /// Last store totals read, the fallback while the store is unreachable.
    pub last_known: last_known::LastKnown,
    /// Metrics.
    pub metrics: Metrics,
    /// CORS origins.
    pub origins: AllowedOrigins,
    /// Admin bearer token (None: admin API off).
    pub admin_token: Option<String>,
    /// Request body limit in bytes.
    pub max_body: usize,
    /// A request body must arrive whole within this time (`--body-read-timeout`).
    pub body_timeout: std::time::Duration,
    /// How long a CDN or browser may reuse a read (`--read-max-age`).
    pub read_max_age: std::time::Duration,
    /// Readiness and the ingest gate.
    pub lifecycle: Arc<Lifecycle>,
    /// Recent `/v1/top` answers.
    pub top_cache: top::TopCache,
    /// The per-client limit of the ingest endpoints (`--rate-limit`; None: off).
    pub rate_limit: Option<rate_limit::RateLimiter>,
    /// The editors' page (`--newsroom`; None: off).
    pub newsroom: Option<newsroom::Newsroom>,
    /// How a request's client address is found (`--client-ip-header`, `--trusted-proxies`).
    pub client_addr: client::ClientAddr,
    /// The bot filter (None with `--count-bots`).
    pub bots: Option<crate::event::BotFilter>,
    /// The visitor salts of today and tomorrow.
    pub salts: Arc<crate::visitors::Salts>,
    /// The beacon secrets (`--beacon-secret`; None: unsigned beacons are counted).
    pub signer: Option<crate::event::Signer>,
}

/// Shared handle to [`Api`].
pub type SharedApi = Arc<Api>;

/// The contract's content type of a JSON body.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// A JSON response with the contract's content type.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    text_response(status, JSON_CONTENT_TYPE, body)
}

/// A plain-text response.
pub fn text_response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The result of a handler.
pub type ApiResult = Result<Response<Body>, ApiError>;
