//! ApiError: every refusal the API can give, and the one place that decides its
//! status code and JSON body. 5xx details are logged, never sent.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{header, HeaderValue, Response, StatusCode};

use super::{json_response, Body};
use crate::event::EventError;

/// A request the API refuses.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// An event (at `index` within a batch) is invalid.
    #[error("{source}")]
    Event {
        /// Position in the batch, when the request held several events.
        index: Option<usize>,
        /// What is wrong with it.
        source: EventError,
    },
    /// A query parameter, path id or admin body is invalid.
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Human text (never echoes input).
        message: String,
    },
    /// Admin endpoint without a valid bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The newsroom behind `--newsroom-auth` without valid Basic credentials.
    #[error("the newsroom needs a user name and password")]
    NewsroomUnauthorized,
    /// Unknown path.
    #[error("no such endpoint")]
    NotFound,
    /// Known path, wrong method.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// Value of the `Allow` header.
        allow: &'static str,
    },
    /// Body over the limit.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The request body did not arrive within `--body-read-timeout`.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// Content type not accepted on an ingest endpoint.
    #[error("content type must be application/json, application/x-ndjson or text/plain")]
    UnsupportedMediaType,
    /// The client sent more ingest requests than `--rate-limit` allows.
    #[error("{}", rate_limited_message(*.over_burst))]
    RateLimited {
        /// Until the client's next request is accepted.
        retry_after: std::time::Duration,
        /// `Some(burst)` when the request holds more events than the burst: it can
        /// never pass, whatever the client waits.
        over_burst: Option<usize>,
    },
    /// New keys refused: the pending map is full.
    #[error("too many pending counters; retry shortly")]
    CapacityExhausted,
    /// The service is stopping.
    #[error("the service is shutting down")]
    ShuttingDown,
    /// The store failed on a read or admin write (the cause is logged, never sent).
    #[error("the store is unavailable")]
    StoreUnavailable(#[from] crate::store::StoreError),
    /// A bug or an I/O failure.
    #[error("internal error")]
    Internal(String),
}

impl From<EventError> for ApiError {
    fn from(source: EventError) -> Self {
        ApiError::Event { index: None, source }
    }
}

fn rate_limited_message(over_burst: Option<usize>) -> String {
    match over_burst {
        None => "too many events from this client; retry later".into(),
        Some(burst) => format!(
            "a request may carry at most {burst} events under this rate limit; send smaller batches (retrying this one never succeeds)"
        ),
    }
}

impl ApiError {
    /// A 400 with `code` and `message`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Event {
                source: EventError::InvalidSignature,
                ..
            } => StatusCode::FORBIDDEN,
            ApiError::Event { .. } | ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::NewsroomUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::CapacityExhausted | ApiError::ShuttingDown | ApiError::StoreUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Event { source, .. } => source.code(),
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized | ApiError::NewsroomUnauthorized => "unauthorized",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::CapacityExhausted => "capacity_exhausted",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The JSON error body of the contract, with `Allow`, `Retry-After` and
    /// `WWW-Authenticate` where they apply.
    pub fn into_response(self) -> Response<Body> {
        match &self {
            ApiError::Internal(detail) => tracing::error!(code = self.code(), detail = %detail, "request failed"),
            // During an outage every read fails alike: log one line per interval, not per request
            // (the flusher logs the store's down/up changes; the 503s are counted in the metrics).
            ApiError::StoreUnavailable(cause) if store_error_log_due() => {
                tracing::error!(code = self.code(), cause = %cause, "request failed (further store errors within 10 s not logged)")
            }
            _ => {}
        }
        let mut error = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        if let ApiError::Event { index: Some(i), .. } = &self {
            error["index"] = (*i).into();
        }
        let mut resp = json_response(self.status(), &serde_json::json!({ "error": error }));
        let headers = resp.headers_mut();
        match &self {
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::CapacityExhausted | ApiError::ShuttingDown | ApiError::StoreUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The rest of the body is not read: the connection cannot carry another request.
            ApiError::PayloadTooLarge { .. } | ApiError::BodyTimeout => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::NewsroomUnauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="viewcounter newsroom", charset="UTF-8""#),
                );
            }
            ApiError::RateLimited { retry_after, .. } => {
                // Whole seconds, rounded up: a client that waits that long gets a token.
                let secs = crate::clock::secs_rounded_up(*retry_after);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            _ => {}
        }
        resp
    }
}

/// Unix second of the last logged store error of a request.
static STORE_ERROR_LOGGED_AT: AtomicU64 = AtomicU64::new(0);
const STORE_ERROR_LOG_EVERY_SECS: u64 = 10;

/// True for at most one caller every `STORE_ERROR_LOG_EVERY_SECS`.
fn store_error_log_due() -> bool {
    let now = crate::clock::unix_secs();
    let last = STORE_ERROR_LOGGED_AT.load(Ordering::Relaxed);
    now.saturating_sub(last) >= STORE_ERROR_LOG_EVERY_SECS
        && STORE_ERROR_LOGGED_AT
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}
