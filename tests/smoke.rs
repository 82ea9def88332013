mod common;

use common::TestApp;

#[tokio::test]
async fn a_view_posted_is_read_back() {
    let app = TestApp::start(&[]).await;
    app.client.view("12345").await;
    assert_eq!(app.client.views("12345").await, 1);
}
