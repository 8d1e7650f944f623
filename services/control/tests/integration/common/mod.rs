//! What the control service's tests share: a service started on loopback against a test
//! database, a channel to it, and its stop.

#![allow(dead_code)] // each test file uses part of it

use plumbline_control::{start, ControlConfig, Running};
use plumbline_runtime::ServiceArgs;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The broker the suite's script started (or the conventional local one).
pub fn kafka() -> String {
    std::env::var("PLUMB_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Loopback, open, cleartext, on `db_url`; GitHub at an address nothing answers.
pub fn local(db_url: &str) -> ControlConfig {
    ControlConfig::local(ServiceArgs::local(&kafka(), db_url, "http://127.0.0.1:9"))
}

/// A running control service and a channel to it.
pub struct Served {
    pub running: Running,
    pub channel: Channel,
    shutdown: CancellationToken,
}

impl Served {
    pub async fn start(config: ControlConfig) -> Served {
        let shutdown = CancellationToken::new();
        let running = start(config, shutdown.clone())
            .await
            .expect("the control service starts");
        let channel = Channel::from_shared(format!("http://{}", running.addr))
            .expect("url")
            .connect()
            .await
            .expect("connects");
        Served {
            running,
            channel,
            shutdown,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.running.task.await;
    }
}
