//! Operations: `/healthz` (the process runs), `/readyz` (events are accepted) and
//! `/metrics` (Prometheus text).

use http::StatusCode;

use super::{json_response, text_response, Api, ApiResult};

/// Above this fill of the pending map, /readyz sends traffic elsewhere.
pub const READY_FILL_LIMIT: f64 = 0.9;

/// `GET /healthz`.
pub fn healthz() -> ApiResult {
    Ok(text_response(StatusCode::OK, "text/plain; charset=utf-8", "ok"))
}

/// Why the service is not ready, if it is not.
pub fn not_ready_reason(api: &Api) -> Option<&'static str> {
    if api.lifecycle.is_stopping() {
        return Some("shutting_down");
    }
    let fill = api.counter.len() as f64 / api.counter.capacity() as f64;
    if fill >= READY_FILL_LIMIT {
        return Some("pending_capacity_nearly_full");
    }
    // The embedded store's rankings load in the background after a restart; Redis's
    // load waits for Redis, which readiness does not (counting goes on in memory).
    let embedded = matches!(api.store, crate::store::Store::Embedded(_));
    (embedded && !api.store.rankings_ready()).then_some("rankings_loading")
}

/// `GET /readyz`.
pub fn readyz(api: &Api) -> ApiResult {
    Ok(match not_ready_reason(api) {
        None => json_response(StatusCode::OK, &serde_json::json!({ "ready": true })),
        Some(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "ready": false, "reason": reason }),
        ),
    })
}

/// `GET /metrics`.
pub fn metrics(api: &Api) -> ApiResult {
    api.metrics.pending_keys.set(api.counter.len() as i64);
    api.metrics.tracked_articles.set(api.store.tracked_articles() as i64);
    Ok(text_response(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        api.metrics.render(),
    ))
}
