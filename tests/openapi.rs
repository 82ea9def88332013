//! docs/openapi.yaml stays in step with the contract and with the running service:
//! every path of ../shared/API.md is described, and every described path is served.

mod common;

use common::TestApp;
use http::{Method, StatusCode};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_default()
}

/// `  /v1/x:` lines of the OpenAPI document.
fn openapi_paths() -> Vec<String> {
    repo_file("docs/openapi.yaml")
        .lines()
        .filter_map(|l| l.strip_prefix("  /").and_then(|p| p.strip_suffix(':')))
        .map(|p| format!("/{p}"))
        .collect()
}

/// Every path the contract names.
const CONTRACT_PATHS: [&str; 12] = [
    "/v1/events",
    "/v1/pixel.gif",
    "/v1/articles/{article}",
    "/v1/articles/{article}/series",
    "/v1/meta",
    "/v1/articles",
    "/v1/top",
    "/v1/counter.js",
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/admin/articles/{article}",
];

#[test]
fn every_contract_path_is_in_the_openapi_document() {
    // The contract lives beside the repository; where it is mounted, the list above must match it.
    if let Ok(contract) = std::fs::read_to_string(format!("{}/../shared/API.md", env!("CARGO_MANIFEST_DIR"))) {
        for path in CONTRACT_PATHS {
            let bare = path.split('{').next().unwrap_or(path);
            assert!(contract.contains(bare), "the contract names {path}");
        }
    }
    let documented = openapi_paths();
    for path in CONTRACT_PATHS {
        assert!(documented.iter().any(|p| p == path), "docs/openapi.yaml lacks {path}");
    }
}

#[tokio::test]
async fn every_documented_path_is_served() {
    let app = TestApp::start(&["--admin-token", "doc-test-token"]).await;
    for path in openapi_paths() {
        let concrete = path.replace("{article}", "doc-check");
        let r = app.client.send(Method::OPTIONS, &concrete, &[], "").await;
        let r = if r.status == StatusCode::NOT_FOUND {
            app.client.get(&concrete).await
        } else {
            r
        };
        assert_ne!(r.status, StatusCode::NOT_FOUND, "{path} is documented but not served");
    }
}
