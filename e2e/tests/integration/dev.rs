//! `plumb dev` as a user runs it: embedded broker, a database, the demo fleet.

use crate::common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plumb_dev_converges_the_demo_fleet_on_the_embedded_broker() {
    let db = TestDb::new().await;
    let args = plumb::dev::DevArgs {
        kafka_brokers: None,
        // `plumb dev` migrates the database itself: the schema owner's role.
        database_url: Some(db.owner_url.clone().into()),
        org: "acme".into(),
        repos: 20,
        protected_fraction: 0.5,
        reconcile_interval_secs: 60,
        control_listen: "127.0.0.1:0".parse().expect("addr"),
        ingest_listen: "127.0.0.1:0".parse().expect("addr"),
        sim_listen: "127.0.0.1:0".parse().expect("addr"),
        exit_after_secs: Some(25),
        otlp_endpoint: None,
    };
    let summary = plumb::dev::run(args, tokio_util::sync::CancellationToken::new())
        .await
        .expect("plumb dev runs");
    assert_eq!(summary.repositories, 20);
    assert_eq!(
        summary.remediations, 10,
        "the unprotected half was remediated, once each"
    );
    assert_eq!((summary.passing, summary.rules), (20, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_postgres_cluster_starts_and_stops() {
    let cluster = tokio::task::spawn_blocking(plumb::pg::PrivateCluster::start)
        .await
        .expect("join")
        .expect("a private cluster starts from the local postgresql installation");
    let url = cluster.admin_url();
    assert!(
        plumbline_store::admin::reachable(&url).await,
        "{url} answers"
    );
    drop(cluster);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !plumbline_store::admin::reachable(&url).await,
        "{url} is stopped after drop"
    );
}
