//! `GET /v1/counter.js`: the embeddable script (assets/counter.js), compiled into the
//! binary and served with a long-enough cache life and an ETag for cheap revalidation.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::{text_response, ApiResult};

/// The script, as served.
pub const COUNTER_JS: &str = include_str!("../../assets/counter.js");

/// Five minutes: a fixed script reaches every page soon, and pages that embed it
/// revalidate with If-None-Match rather than download it again.
pub const CACHE_CONTROL: &str = "public, max-age=300";

/// A strong validator: a hash of the script, so it changes exactly when the script does.
static ETAG: LazyLock<HeaderValue> = LazyLock::new(|| {
    HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(COUNTER_JS.as_bytes()))).expect("hex is a valid header")
});

/// FNV-1a, 64 bits: not cryptographic, only a content fingerprint.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether an If-None-Match header names the current version (`*`, weak or strong).
fn matches_etag(headers: &HeaderMap) -> bool {
    let etag = ETAG.to_str().unwrap_or_default();
    headers.get_all(header::IF_NONE_MATCH).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == "*" || tag == etag)
    })
}

/// `GET /v1/counter.js`: 200 with the script, or 304 when the client has it.
pub fn counter_js(headers: &HeaderMap) -> ApiResult {
    let mut resp = if matches_etag(headers) {
        let mut resp = text_response(StatusCode::NOT_MODIFIED, "text/plain", Bytes::new());
        resp.headers_mut().remove(header::CONTENT_TYPE);
        resp
    } else {
        text_response(
            StatusCode::OK,
            "application/javascript; charset=utf-8",
            Bytes::from_static(COUNTER_JS.as_bytes()),
        )
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    h.insert(header::ETAG, ETAG.clone());
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_changes_with_the_content() {
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let etag = ETAG.to_str().unwrap().to_string();
        for value in [etag.clone(), format!("\"x\", W/{etag}"), "*".to_string()] {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, value.parse().unwrap());
            assert!(matches_etag(&headers), "{value}");
        }
        let mut stale = HeaderMap::new();
        stale.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"0000\""));
        assert!(!matches_etag(&stale));
        assert!(!matches_etag(&HeaderMap::new()));
    }

    #[test]
    fn the_script_is_es5() {
        for modern in ["=>", "let ", "const ", "`", "class ", "async ", "?.", "??"] {
            assert!(!COUNTER_JS.contains(modern), "counter.js uses {modern:?}");
        }
    }
}
