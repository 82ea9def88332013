//! Routing: match the path to a route, the method to a handler, and wrap every
//! answer with CORS headers and request metrics (labelled by route template).

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::IpAddr;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{
    admin, cache, ingest, newsroom, ops, reads, script, series, text_response, top, ApiError, ApiResult, Body,
    SharedApi,
};

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The public API; `metrics` says whether /metrics is served here too.
    Public {
        /// Serve /metrics on this listener.
        metrics: bool,
    },
    /// The internal `--metrics-listen` address: /metrics, /healthz, /readyz only.
    Internal,
}

impl Surface {
    /// The `listener` label of connection metrics.
    pub fn label(self) -> &'static str {
        match self {
            Surface::Public { .. } => "public",
            Surface::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Route<'a> {
    Events,
    Pixel,
    Articles,
    Article(&'a str),
    Series(&'a str),
    Meta,
    Top,
    CounterJs,
    AdminArticle(&'a str),
    Healthz,
    Readyz,
    Metrics,
    Root,
    Newsroom(&'a str),
}

impl Route<'_> {
    fn of(path: &str, surface: Surface) -> Option<Route<'_>> {
        let ops = match path {
            "/healthz" => Some(Route::Healthz),
            "/readyz" => Some(Route::Readyz),
            "/metrics" if surface != (Surface::Public { metrics: false }) => Some(Route::Metrics),
            _ => None,
        };
        if ops.is_some() || surface == Surface::Internal {
            return ops;
        }
        match path {
            "/v1/events" => Some(Route::Events),
            "/v1/pixel.gif" => Some(Route::Pixel),
            "/v1/articles" => Some(Route::Articles),
            "/v1/top" => Some(Route::Top),
            "/v1/meta" => Some(Route::Meta),
            "/v1/counter.js" => Some(Route::CounterJs),
            "/" => Some(Route::Root),
            p if p == "/newsroom" || p.starts_with("/newsroom/") => Some(Route::Newsroom(p)),
            _ => {
                let segment = |prefix: &str| {
                    path.strip_prefix(prefix)
                        .filter(|id| !id.is_empty() && !id.contains('/'))
                };
                if let Some(id) = segment("/v1/articles/") {
                    return Some(Route::Article(id));
                }
                let series = path
                    .strip_prefix("/v1/articles/")
                    .and_then(|p| p.strip_suffix("/series"));
                if let Some(id) = series.filter(|id| !id.is_empty() && !id.contains('/')) {
                    return Some(Route::Series(id));
                }
                segment("/v1/admin/articles/").map(Route::AdminArticle)
            }
        }
    }

    fn template(&self) -> &'static str {
        match self {
            Route::Events => "/v1/events",
            Route::Pixel => "/v1/pixel.gif",
            Route::Articles => "/v1/articles",
            Route::Article(_) => "/v1/articles/{article}",
            Route::Series(_) => "/v1/articles/{article}/series",
            Route::Meta => "/v1/meta",
            Route::Top => "/v1/top",
            Route::CounterJs => "/v1/counter.js",
            Route::AdminArticle(_) => "/v1/admin/articles/{article}",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::Root => "/",
            Route::Newsroom(_) => "/newsroom/",
        }
    }

    fn allow(&self) -> &'static str {
        match self {
            Route::Events => "POST, OPTIONS",
            Route::AdminArticle(_) => "PUT, DELETE",
            // The pixel counts a view: a HEAD (a link checker, a prefetch) must not.
            Route::Pixel => "GET, OPTIONS",
            Route::Articles | Route::Article(_) | Route::Series(_) | Route::Meta | Route::Top => "GET, HEAD, OPTIONS",
            Route::CounterJs | Route::Healthz | Route::Readyz | Route::Metrics | Route::Root | Route::Newsroom(_) => {
                "GET, HEAD"
            }
        }
    }

    /// HEAD is GET without the body (hyper leaves the body out), where GET changes nothing.
    fn answers_head(&self) -> bool {
        self.allow().contains("HEAD")
    }

    /// Reads a CDN may cache (`Cache-Control`, `ETag`, 304: see cache.rs).
    fn is_cached_read(&self) -> bool {
        matches!(
            self,
            Route::Articles | Route::Article(_) | Route::Series(_) | Route::Top
        )
    }

    fn is_browser_facing(&self) -> bool {
        matches!(
            self,
            Route::Events
                | Route::Pixel
                | Route::Articles
                | Route::Article(_)
                | Route::Series(_)
                | Route::Meta
                | Route::Top
        )
    }
}

/// Answers one request from `peer`; never fails (errors become their JSON response).
pub async fn handle(
    api: SharedApi,
    surface: Surface,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let route = Route::of(parts.uri.path(), surface);
    let result = match route {
        None => Err(ApiError::NotFound),
        Some(r) => {
            dispatch(
                &api,
                r,
                &parts.method,
                parts.uri.query().unwrap_or(""),
                &ingest::Sender::of(&api, peer, &parts.headers),
                &parts.headers,
                body,
            )
            .await
        }
    };
    let result = match result {
        Ok(resp) if route.is_some_and(|r| r.is_cached_read()) => {
            Ok(cache::cacheable(resp, &parts.headers, api.read_max_age))
        }
        other => other,
    };
    let status = match &result {
        Ok(r) => r.status(),
        Err(e) => e.status(),
    };
    if let Err(e) = &result {
        let refused_event = !matches!(e, ApiError::MethodNotAllowed { .. } | ApiError::NotFound);
        if refused_event && matches!(route, Some(Route::Events | Route::Pixel)) {
            api.metrics.rejected.with_label_values(&[e.code()]).inc();
        }
    }
    let mut resp = result.unwrap_or_else(ApiError::into_response);
    if route.is_some_and(|r| r.is_browser_facing()) {
        add_cors(&api, &parts.headers, resp.headers_mut());
    }
    observe(&api, route, status, started.elapsed());
    Ok(resp)
}

/// Counts the request by route template and status, and its latency: an accepted
/// beacon (most requests) through handles resolved once, the rest by label lookup.
fn observe(api: &SharedApi, route: Option<Route<'_>>, status: StatusCode, took: Duration) {
    let m = &api.metrics;
    let seconds = took.as_secs_f64();
    match route {
        Some(Route::Events) if status == StatusCode::ACCEPTED => {
            m.ingest_duration.observe(seconds);
            m.ingest_accepted.inc();
        }
        _ => {
            let template = route.map_or("unmatched", |r| r.template());
            m.http_duration.with_label_values(&[template]).observe(seconds);
            m.http_requests.with_label_values(&[template, status.as_str()]).inc();
        }
    }
}

async fn dispatch(
    api: &SharedApi,
    route: Route<'_>,
    method: &Method,
    query: &str,
    sender: &ingest::Sender<'_>,
    headers: &HeaderMap,
    body: Incoming,
) -> ApiResult {
    if method == Method::OPTIONS && route.is_browser_facing() {
        return Ok(preflight(route));
    }
    let method = if method == Method::HEAD && route.answers_head() {
        &Method::GET
    } else {
        method
    };
    match (route, method) {
        (Route::Events, &Method::POST) => {
            ingest::check_content_type(headers)?;
            let body = read_body(body, headers, api.max_body, api.body_timeout).await?;
            wait_for_a_late_tick(api).await;
            ingest::post_events(api, sender, &body)
        }
        (Route::Pixel, &Method::GET) => {
            wait_for_a_late_tick(api).await;
            ingest::pixel(api, sender, query)
        }
        // The reads and the admin calls await the store through futures of 1-5 KB:
        // boxed, they leave this future (which hyper moves in place for every
        // request, beacons included) the size of the ingest path.
        (Route::Articles, &Method::GET) => Box::pin(reads::articles(api, query)).await,
        (Route::Article(id), &Method::GET) => Box::pin(reads::article(api, id)).await,
        (Route::Series(id), &Method::GET) => Box::pin(series::series(api, id, query)).await,
        (Route::Meta, &Method::GET) => Box::pin(series::meta(api)).await,
        (Route::Top, &Method::GET) => Box::pin(top::top(api, query)).await,
        (Route::CounterJs, &Method::GET) => script::counter_js(headers),
        (Route::AdminArticle(id), m) if m == Method::PUT || m == Method::DELETE => {
            admin::authorize(api, headers)?;
            if m == Method::PUT {
                let body = read_body(body, headers, api.max_body, api.body_timeout).await?;
                Box::pin(admin::put_article(api, id, &body)).await
            } else {
                Box::pin(admin::delete_article(api, id)).await
            }
        }
        (Route::AdminArticle(_), _) if api.admin_token.is_none() => Err(ApiError::NotFound),
        (Route::Healthz, &Method::GET) => ops::healthz(),
        (Route::Readyz, &Method::GET) => ops::readyz(api),
        (Route::Metrics, &Method::GET) => ops::metrics(api),
        (Route::Root, &Method::GET) => newsroom::root(api.newsroom.as_ref()),
        (Route::Newsroom(path), &Method::GET) => newsroom::serve(api.newsroom.as_ref(), path, headers),
        (Route::Root | Route::Newsroom(_), _) if api.newsroom.is_none() => Err(ApiError::NotFound),
        (r, _) => Err(ApiError::MethodNotAllowed { allow: r.allow() }),
    }
}

/// Holds an ingest request while a flush tick runs past the flush interval, so what a
/// crash can lose stays within about an interval of events (flusher/gate.rs). The
/// common case is one atomic load; the wait is boxed to keep the request's future small.
async fn wait_for_a_late_tick(api: &super::Api) {
    if api.tick_gate.holds_for().is_some() && Box::pin(api.tick_gate.wait()).await {
        api.metrics.ingest_held.inc();
    }
}

/// A refused body is still read (and dropped) up to this size, so the client finishes
/// sending and reads the 413 instead of a reset connection.
const DISCARD_LIMIT: usize = 1 << 20;

/// Reads the whole body within `deadline`, at most `limit` bytes of it kept in memory.
/// A `Content-Length` over the limit is refused (413) at once, before any of the body
/// is read; a larger body without one is refused once it passes the limit.
async fn read_body(body: Incoming, headers: &HeaderMap, limit: usize, deadline: Duration) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // A beacon's body has usually arrived with its head: then no timer is armed.
    let mut collect = std::pin::pin!(collect_body(body, limit));
    if let Poll::Ready(read) = poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await {
        return read;
    }
    tokio::time::timeout(deadline, collect)
        .await
        .map_err(|_| ApiError::BodyTimeout)?
}

async fn collect_body(mut body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let mut kept = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request("body_read_error", format!("could not read the body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        seen += data.len();
        if seen > limit {
            kept.clear();
            if seen > DISCARD_LIMIT {
                break;
            }
        } else {
            kept.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(kept.freeze())
}

fn preflight(route: Route<'_>) -> Response<Body> {
    let mut resp = text_response(StatusCode::NO_CONTENT, "text/plain", Bytes::new());
    let h = resp.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(route.allow()));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(route.allow()),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    h.remove(header::CONTENT_TYPE);
    resp
}

fn add_cors(api: &SharedApi, request: &HeaderMap, response: &mut HeaderMap) {
    let origin = request.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let allowed = match api.origins.allow(origin) {
        Some("*") => Some(HeaderValue::from_static("*")),
        other => other.and_then(|o| HeaderValue::from_str(o).ok()),
    };
    if let Some(allowed) = allowed {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    }
    if !matches!(api.origins, crate::config::AllowedOrigins::Any) {
        response.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}
