//! Reads a CDN can absorb: `Cache-Control: public, max-age=N` (`--read-max-age`;
//! 0 sends `no-store`) and an `ETag` on a read's 200, and 304 for a matching
//! `If-None-Match`. Applied by the router to every cached read route, after the
//! handler, so a new read route needs only to be listed there.

use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::Body;

/// The `Cache-Control` value for `max_age`: zero forbids storing; anything else is
/// whole seconds, rounded up (`500ms` allows a second, it does not forbid storing).
pub fn cache_control(max_age: Duration) -> HeaderValue {
    if max_age.is_zero() {
        return HeaderValue::from_static("no-store");
    }
    let secs = crate::clock::secs_rounded_up(max_age);
    HeaderValue::try_from(format!("public, max-age={secs}")).expect("ASCII header value")
}

/// A strong validator of `body`: the same bytes give the same tag on every instance
/// (FNV-1a, stable across processes and versions, unlike the std hasher).
pub fn etag(body: &[u8]) -> HeaderValue {
    let tag = crate::fingerprint::fnv1a(body);
    HeaderValue::try_from(format!("\"{tag:016x}\"")).expect("ASCII header value")
}

/// True when `If-None-Match` (a list of tags, weak or strong, or `*`) holds `tag`.
pub fn none_match(request: &HeaderMap, tag: &HeaderValue) -> bool {
    let tag = tag.as_bytes();
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t).as_bytes() == tag)
}

/// Adds the caching headers to a read's 200 and turns it into a 304 when the client
/// holds the same representation. Other statuses pass unchanged (an error is never
/// cached by the service's say).
pub fn cacheable(resp: Response<Body>, request: &HeaderMap, max_age: Duration) -> Response<Body> {
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = buffered(body);
    let tag = etag(&bytes);
    parts.headers.insert(header::CACHE_CONTROL, cache_control(max_age));
    let not_modified = none_match(request, &tag);
    parts.headers.insert(header::ETAG, tag);
    if not_modified {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Full::new(Bytes::new()));
    }
    Response::from_parts(parts, Full::new(bytes))
}

/// The bytes of a fully buffered body (a `Full` is ready at once).
fn buffered(body: Body) -> Bytes {
    body.collect()
        .now_or_never()
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &'static str) -> Response<Body> {
        Response::new(Full::new(Bytes::from_static(body.as_bytes())))
    }

    fn with_inm(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::try_from(v).unwrap());
        h
    }

    #[test]
    fn a_read_gets_a_max_age_and_a_stable_etag() {
        let a = cacheable(ok("{}"), &HeaderMap::new(), Duration::from_secs(10));
        let b = cacheable(ok("{}"), &HeaderMap::new(), Duration::from_secs(10));
        assert_eq!(a.headers()[header::CACHE_CONTROL], "public, max-age=10");
        assert_eq!(a.headers()[header::ETAG], b.headers()[header::ETAG]);
        let c = cacheable(ok("{ }"), &HeaderMap::new(), Duration::from_secs(10));
        assert_ne!(a.headers()[header::ETAG], c.headers()[header::ETAG]);
    }

    #[test]
    fn a_zero_max_age_forbids_storing() {
        let r = cacheable(ok("{}"), &HeaderMap::new(), Duration::ZERO);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn a_max_age_under_a_second_allows_one() {
        for (max_age, want) in [
            (Duration::from_millis(500), "public, max-age=1"),
            (Duration::from_millis(1500), "public, max-age=2"),
        ] {
            assert_eq!(cache_control(max_age), want);
        }
    }

    #[test]
    fn a_matching_if_none_match_gets_304_and_another_gets_the_body() {
        let tag = etag(b"{}").to_str().unwrap().to_string();
        for inm in [tag.clone(), format!("\"x\", W/{tag}"), "*".to_string()] {
            let r = cacheable(ok("{}"), &with_inm(&inm), Duration::from_secs(10));
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{inm}");
            assert_eq!(r.headers()[header::ETAG], tag.as_str());
        }
        let r = cacheable(ok("{}"), &with_inm("\"other\""), Duration::from_secs(10));
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[test]
    fn errors_pass_unchanged() {
        let mut r = ok("{}");
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let r = cacheable(r, &HeaderMap::new(), Duration::from_secs(10));
        assert!(r.headers().get(header::ETAG).is_none());
    }
}
