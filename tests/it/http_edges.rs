//! The HTTP layer's defences and protocols: slow clients, unbounded chunked bodies,
//! h2c, and arbitrary input that must never produce a 5xx or a panic.

use crate::support as common;

use std::time::Duration;

use bytes::Bytes;
use common::TestApp;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn raw_exchange(app: &TestApp, request: &[u8]) -> String {
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = TestApp::start(&["--header-read-timeout", "200ms"]).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the connection within the timeout");
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_at_the_limit() {
    let app = TestApp::start(&["--max-body-bytes", "1024"]).await;
    let chunk = format!("{:x}\r\n{}\r\n", 800, "x".repeat(800));
    let req = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}{chunk}0\r\n\r\n"
    );
    let answer = raw_exchange(&app, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"));
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served() {
    let app = TestApp::start(&[]).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("http://{}/v1/events", app.addr))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(br#"{"type":"view","article":"h2"}"#)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let _ = resp.into_body().collect().await;
    assert_eq!(app.client.views("h2").await, 1);
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "[{}\\[\\]\":,a-z0-9 \\\\\n]{0,120}".prop_map(String::into_bytes),
        (
            "[a-z]{0,8}",
            "[ -~]{0,70}",
            proptest::option::of("[a-z_]{0,10}"),
            proptest::option::of("[ -~]{0,20}")
        )
            .prop_map(|(t, a, n, s)| {
                serde_json::json!({"type": t, "article": a, "network": n, "section": s})
                    .to_string()
                    .into_bytes()
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_input_never_gets_a_5xx(body in any_body(), query in "[ -~]{0,60}") {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let app = TestApp::start(&["--flush-interval", "1h"]).await;
            let headers = [("content-type", "application/json")];
            let r = app.client.send(http::Method::POST, "/v1/events", &headers, body.clone()).await;
            assert!(r.status.is_success() || r.status.is_client_error(), "{}: {}", r.status, r.text());
            assert!(r.status == StatusCode::ACCEPTED || r.json()["error"]["code"].is_string());
            let q = form_urlencoded_escape(&query);
            for path in ["/v1/pixel.gif?", "/v1/top?", "/v1/articles?ids=", "/v1/articles/"] {
                let r = app.client.get(&format!("{path}{q}")).await;
                assert!(!r.status.is_server_error(), "{path}{q}: {}", r.status);
            }
        });
    }
}

fn form_urlencoded_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'=' | b'&' | b',' | b'.' | b'_' | b'-' | b'%' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_client_over_the_rate_limit_gets_429_and_counts_nothing() {
    let app = TestApp::start(&["--rate-limit", "3", "--client-ip-header", "X-Forwarded-For"]).await;
    let view = |from: &'static str| {
        let client = app.client.clone();
        async move {
            let body = r#"{"type":"view","article":"limited"}"#;
            let headers = [("content-type", "text/plain"), ("x-forwarded-for", from)];
            client.send(http::Method::POST, "/v1/events", &headers, body).await
        }
    };

    for _ in 0..3 {
        assert_eq!(view("203.0.113.7").await.status, StatusCode::ACCEPTED);
    }
    let refused = view("203.0.113.7").await;
    let pixel = app
        .client
        .send(
            http::Method::GET,
            "/v1/pixel.gif?type=view&article=limited",
            &[("x-forwarded-for", "203.0.113.7")],
            "",
        )
        .await;
    let other = view("198.51.100.1").await;
    let read = app.client.get("/v1/articles/limited").await;

    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_code(), "rate_limited");
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(
        pixel.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the pixel counts, so it is limited too"
    );
    assert_eq!(other.status, StatusCode::ACCEPTED, "another client is served");
    assert_eq!(read.status, StatusCode::OK, "reads are not limited");
    assert_eq!(
        app.client.views("limited").await,
        4,
        "the refused requests counted nothing"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        view("203.0.113.7").await.status,
        StatusCode::ACCEPTED,
        "a token came back"
    );
    let rejected = r#"viewcounter_events_rejected_total{reason="rate_limited"}"#;
    assert_eq!(app.client.metric(rejected).await, 2.0);
}
