//! `GET /v1/counter.js`: the embeddable script (assets/counter.js), compiled into the
//! binary and served with a long-enough cache life, an ETag for cheap revalidation, and
//! gzip for the browsers that accept it (every current one): ~1.4 KB on the wire.

use std::io::Write;
use std::sync::LazyLock;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::{cache, text_response, ApiResult};

/// The script, as served.
pub const COUNTER_JS: &str = include_str!("../../assets/counter.js");

/// Five minutes: a fixed script reaches every page soon, and pages that embed it
/// revalidate with If-None-Match rather than download it again.
pub const CACHE_CONTROL: &str = "public, max-age=300";

/// A strong validator: a hash of the script, so it changes exactly when the script does.
static ETAG: LazyLock<HeaderValue> = LazyLock::new(|| cache::etag(COUNTER_JS.as_bytes()));

/// The gzip representation's validator: it differs from the plain one, as RFC 9110 asks
/// of a strong ETag per representation.
static ETAG_GZIP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let plain = ETAG.to_str().expect("ascii").trim_end_matches('"');
    HeaderValue::from_str(&format!("{plain}-gzip\"")).expect("hex is a valid header")
});

/// The script gzipped once, at first use.
pub static COUNTER_JS_GZIP: LazyLock<Bytes> = LazyLock::new(|| {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(COUNTER_JS.as_bytes())
        .expect("writing to a Vec cannot fail");
    Bytes::from(gz.finish().expect("writing to a Vec cannot fail"))
});

/// Whether Accept-Encoding admits gzip (and does not refuse it with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().any(|v| {
        v.to_str().unwrap_or("").split(',').any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| p.strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()) == Some(0.0));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
    })
}

/// Whether an If-None-Match header names the current version (`*`, weak or strong, of
/// either representation).
fn matches_etag(headers: &HeaderMap) -> bool {
    cache::none_match(headers, &ETAG) || cache::none_match(headers, &ETAG_GZIP)
}

/// `GET /v1/counter.js`: 200 with the script, or 304 when the client has it.
pub fn counter_js(headers: &HeaderMap) -> ApiResult {
    let gzip = accepts_gzip(headers);
    let mut resp = if matches_etag(headers) {
        let mut resp = text_response(StatusCode::NOT_MODIFIED, "text/plain", Bytes::new());
        resp.headers_mut().remove(header::CONTENT_TYPE);
        resp
    } else {
        let body = if gzip {
            COUNTER_JS_GZIP.clone()
        } else {
            Bytes::from_static(COUNTER_JS.as_bytes())
        };
        let mut resp = text_response(StatusCode::OK, "application/javascript; charset=utf-8", body);
        if gzip {
            resp.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        resp
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::ETAG, if gzip { ETAG_GZIP.clone() } else { ETAG.clone() });
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_gzipped_script_is_the_script_and_under_3_kb() {
        use std::io::Read;
        let mut plain = String::new();
        flate2::read::GzDecoder::new(&COUNTER_JS_GZIP[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, COUNTER_JS);
        assert!(COUNTER_JS_GZIP.len() < 3072, "{} bytes gzipped", COUNTER_JS_GZIP.len());
    }

    #[test]
    fn accept_encoding_is_read_with_its_q_values() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            accepts_gzip(&h)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, gzip;q=0.8"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("gzip; q=0.000"));
        assert!(!with("br, deflate"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn the_script_is_es5() {
        for modern in ["=>", "let ", "const ", "`", "class ", "async ", "?.", "??"] {
            assert!(!COUNTER_JS.contains(modern), "counter.js uses {modern:?}");
        }
    }
}
