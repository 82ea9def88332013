//! The Redis store on a real Redis Cluster (three masters started by the test):
//! instances sharing the cluster count exactly, through a stalled node and a node
//! killed and restarted. (Every contract case also runs on a cluster: tests/contract.rs.)

use crate::support as common;
use crate::support::load;

use common::{RedisCluster, TestApp, FLUSH_DUPLICATE, FLUSH_ERROR, FLUSH_OK};
use load::{assert_redis_holds, Load};

async fn app_on(cluster: &RedisCluster) -> TestApp {
    let urls = cluster.urls();
    TestApp::start(&["--redis-url", &urls, "--redis-read-timeout", "5s"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_count_exactly_on_a_cluster_through_a_stalled_node() {
    let cluster = RedisCluster::start();
    let (a, b) = (app_on(&cluster).await, app_on(&cluster).await);
    let (load_a, load_b) = (Load::start(&a.client, 2), Load::start(&b.client, 2));
    load_a.wait_accepted(2_000).await;

    // Longer than the 2 s response timeout: answers from that node are lost, and the
    // commands queued behind the sleep still run when it wakes.
    cluster.nodes[1].stall(3.0);
    a.wait_metric_above(FLUSH_ERROR, 0.0, 15).await;
    let oks = a.client.metric(FLUSH_OK).await;
    a.wait_metric_above(FLUSH_OK, oks, 20).await;
    load_b.wait_accepted(4_000).await;
    let (ledger_a, ledger_b) = (load_a.stop().await, load_b.stop().await);
    let duplicates = a.client.metric(FLUSH_DUPLICATE).await + b.client.metric(FLUSH_DUPLICATE).await;
    a.wait_caught_up(60).await;
    b.wait_caught_up(60).await;
    a.stop().await;
    b.stop().await;

    assert!(duplicates >= 1.0, "a lost answer was retried as a duplicate");
    assert_redis_holds(&cluster.urls(), &[&ledger_a, &ledger_b]);
    for node in &cluster.nodes {
        let keys: u64 = node.cli(&["DBSIZE"]).unwrap().parse().unwrap();
        assert!(keys > 0, "node {} holds partitions too", node.port);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_killed_and_restarted_loses_and_doubles_nothing() {
    let mut cluster = RedisCluster::start();
    let app = app_on(&cluster).await;
    let load = Load::start(&app.client, 3);
    load.wait_accepted(2_000).await;

    cluster.nodes[2].kill();
    // A script for the dead node fails within the 3.5 s call bound; the wait is long
    // for a loaded box, where a debug build's flush can be seconds behind its load.
    app.wait_metric_above(FLUSH_ERROR, 0.0, 60).await;
    load.wait_accepted(2_000).await;
    // Restarted from its AOF and nodes.conf, the node serves its slots again.
    tokio::task::block_in_place(|| cluster.nodes[2].restart());
    let oks = app.client.metric(FLUSH_OK).await;
    app.wait_metric_above(FLUSH_OK, oks, 30).await;
    load.wait_accepted(2_000).await;
    let ledger = load.stop().await;
    app.wait_caught_up(60).await;
    app.stop().await;

    assert_redis_holds(&cluster.urls(), &[&ledger]);
}
