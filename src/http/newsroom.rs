//! `GET /newsroom/`: the editors' page, compiled into the binary (assets/newsroom/:
//! the page, its script and style, and the vendored uPlot with its licence). The page
//! reads the public API (`/v1/top`, `/v1/meta`, `/v1/articles`, `/series`) from the
//! same origin and makes no other request. `--newsroom off` answers 404;
//! `--newsroom-auth USER:PASSWORD` puts the page (not the public API it reads) behind
//! HTTP Basic authentication. `GET /` redirects here while the newsroom is on.

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use subtle::ConstantTimeEq;

use super::{text_response, ApiError, ApiResult};

/// One file of the page.
struct Asset {
    /// Path below `/newsroom/` ("" is the page itself).
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../assets/newsroom/index.html"),
    },
    Asset {
        path: "app.js",
        content_type: "application/javascript; charset=utf-8",
        body: include_bytes!("../../assets/newsroom/app.js"),
    },
    Asset {
        path: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/newsroom/app.css"),
    },
    Asset {
        path: "vendor/uPlot.iife.min.js",
        content_type: "application/javascript; charset=utf-8",
        body: include_bytes!("../../assets/newsroom/vendor/uPlot.iife.min.js"),
    },
    Asset {
        path: "vendor/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/newsroom/vendor/uPlot.min.css"),
    },
    Asset {
        path: "vendor/uPlot.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../assets/newsroom/vendor/uPlot.LICENSE"),
    },
];

/// Only what the page itself needs: its own files and the API on the same origin.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The newsroom as configured; `None` in [`super::Api`] when `--newsroom off`.
#[derive(Debug, Clone)]
pub struct Newsroom {
    /// The `Authorization` value a client must send (`Basic <base64(user:password)>`'s
    /// token), when `--newsroom-auth` is set.
    credentials: Option<String>,
}

impl Newsroom {
    /// A newsroom open to all, or behind Basic authentication with `user_password`
    /// (`USER:PASSWORD`).
    pub fn new(user_password: Option<&str>) -> Newsroom {
        Newsroom {
            credentials: user_password.map(|up| base64::engine::general_purpose::STANDARD.encode(up.as_bytes())),
        }
    }

    /// Ok when the page is open or the request carries the configured credentials
    /// (compared in constant time); else 401 with a `WWW-Authenticate: Basic` challenge.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = self.credentials.as_deref() else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map_or("", |(_, token)| token.trim());
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::NewsroomUnauthorized)
        }
    }
}

/// Answers `path` (`/newsroom`, `/newsroom/`, `/newsroom/<asset>`).
pub fn serve(newsroom: Option<&Newsroom>, path: &str, headers: &HeaderMap) -> ApiResult {
    let newsroom = newsroom.ok_or(ApiError::NotFound)?;
    newsroom.authorize(headers)?;
    let Some(rest) = path.strip_prefix("/newsroom/") else {
        return Ok(redirect("/newsroom/"));
    };
    let asset = ASSETS.iter().find(|a| a.path == rest).ok_or(ApiError::NotFound)?;
    let mut resp = text_response(StatusCode::OK, asset.content_type, Bytes::from_static(asset.body));
    let h = resp.headers_mut();
    // Small files, revalidated each load: a new binary's page shows at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    Ok(resp)
}

/// `GET /`: to the newsroom while it is on (a new user's first look), else 404.
pub fn root(newsroom: Option<&Newsroom>) -> ApiResult {
    newsroom.ok_or(ApiError::NotFound)?;
    Ok(redirect("/newsroom/"))
}

fn redirect(to: &'static str) -> http::Response<super::Body> {
    let mut resp = text_response(StatusCode::FOUND, "text/plain; charset=utf-8", Bytes::new());
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_credentials_are_checked_and_the_scheme_is_case_insensitive() {
        let n = Newsroom::new(Some("editor:s3cret"));
        // base64("editor:s3cret")
        assert!(n.authorize(&with_auth("Basic ZWRpdG9yOnMzY3JldA==")).is_ok());
        assert!(n.authorize(&with_auth("basic ZWRpdG9yOnMzY3JldA==")).is_ok());
        for wrong in ["Basic ZWRpdG9yOndyb25n", "Bearer ZWRpdG9yOnMzY3JldA==", "Basic", ""] {
            assert!(n.authorize(&with_auth(wrong)).is_err(), "{wrong:?}");
        }
        assert!(n.authorize(&HeaderMap::new()).is_err());
        assert!(Newsroom::new(None).authorize(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn every_asset_is_served_and_unknown_ones_are_404() {
        let n = Newsroom::new(None);
        for a in ASSETS {
            let r = serve(Some(&n), &format!("/newsroom/{}", a.path), &HeaderMap::new()).unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{}", a.path);
        }
        let missing = serve(Some(&n), "/newsroom/nope.js", &HeaderMap::new()).unwrap_err();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            serve(None, "/newsroom/", &HeaderMap::new()).unwrap_err().status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            serve(Some(&n), "/newsroom", &HeaderMap::new()).unwrap().status(),
            StatusCode::FOUND
        );
    }

    #[test]
    fn the_page_makes_no_request_to_another_origin() {
        for a in ASSETS.iter().filter(|a| !a.path.starts_with("vendor/")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for scheme in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(scheme), "{} mentions {scheme}", a.path);
            }
        }
    }
}
