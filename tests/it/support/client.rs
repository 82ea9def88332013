//! A minimal HTTP/1.1 client for the tests (hyper-util's pooled client).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

/// One answer, fully read.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// The contract's error code, if the body is an error.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_string()
    }
}

/// A client bound to one server address.
#[derive(Clone)]
pub struct Client {
    base: String,
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client for `http://addr`.
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            base: format!("http://{addr}"),
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends any request; `headers` are (name, value) pairs.
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).expect("request builds");
        let resp = self.inner.request(req).await.expect("request succeeds");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body reads").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `POST /v1/events`; `None` when the connection fails (a server killed mid-request).
    pub async fn try_post_events(&self, body: String) -> Option<StatusCode> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/v1/events", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request builds");
        let resp = self.inner.request(req).await.ok()?;
        let status = resp.status();
        resp.into_body().collect().await.ok()?;
        Some(status)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    /// `POST /v1/events` with a JSON body.
    pub async fn post_events(&self, body: &str) -> Reply {
        self.send(
            Method::POST,
            "/v1/events",
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    /// `POST /v1/events` with an NDJSON body (one event a line).
    pub async fn post_ndjson(&self, lines: impl Into<Bytes>) -> Reply {
        self.send(
            Method::POST,
            "/v1/events",
            &[("content-type", "application/x-ndjson")],
            lines,
        )
        .await
    }

    /// Posts one view of `article` and asserts 202.
    pub async fn view(&self, article: &str) {
        let r = self
            .post_events(&format!(r#"{{"type":"view","article":"{article}"}}"#))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    }

    /// Posts one share of `article` to `network` and asserts 202.
    pub async fn share(&self, article: &str, network: &str) {
        let r = self
            .post_events(&format!(
                r#"{{"type":"share","article":"{article}","network":"{network}"}}"#
            ))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    }

    /// `GET /v1/articles/{article}` as JSON (asserts 200).
    pub async fn article(&self, article: &str) -> serde_json::Value {
        let r = self.get(&format!("/v1/articles/{article}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()
    }

    /// The views of `article`.
    pub async fn views(&self, article: &str) -> u64 {
        self.article(article).await["views"]
            .as_u64()
            .expect("views is a number")
    }

    /// The value of one sample line of /metrics (`name{labels}`), 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.get("/metrics").await.text();
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().expect("metric value parses"))
    }
}
