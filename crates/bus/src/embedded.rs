//! An in-process Kafka broker (librdkafka's mock cluster) for `plumb dev` and fast tests.
//!
//! The mock cluster is not `Send`, so it lives on a thread of its own until dropped. It has no
//! CreateTopics; topics are created through its own API.

use crate::{BusError, Topics};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("starting its thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("its thread ended before the broker was ready")]
    Gone,
    #[error("starting the mock cluster: {0}")]
    Cluster(#[source] rdkafka::error::KafkaError),
    #[error("create topic {topic}: {source}")]
    Topic {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

pub struct EmbeddedBroker {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    /// Told when the cluster is gone.
    stopped: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

/// The longest dropping the broker waits for the mock cluster to go: a client still closing can
/// hold it, and the process that drops it is usually ending.
const STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

impl EmbeddedBroker {
    pub fn start(topics: &Topics, partitions: i32) -> Result<Self, BusError> {
        let names: Vec<String> = topics.all().iter().map(|s| s.to_string()).collect();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, EmbeddedError>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (stopped_tx, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match rdkafka::mocking::MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(EmbeddedError::Cluster(e)));
                        return;
                    }
                };
                for n in &names {
                    if let Err(e) = cluster.create_topic(n, partitions, 1) {
                        let _ = ready_tx.send(Err(EmbeddedError::Topic {
                            topic: n.clone(),
                            source: e,
                        }));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Keep the cluster alive until asked to stop (or the handle is dropped).
                let _ = stop_rx.recv();
                drop(cluster);
                let _ = stopped_tx.send(());
            })
            .map_err(|e| BusError::Embedded(EmbeddedError::Thread(e)))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| BusError::Embedded(EmbeddedError::Gone))?
            .map_err(BusError::Embedded)?;
        Ok(EmbeddedBroker {
            bootstrap,
            stop: Some(stop_tx),
            stopped,
            thread: Some(thread),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Err(mpsc::RecvTimeoutError::Timeout) = self.stopped.recv_timeout(STOP_LIMIT) {
            tracing::warn!(
                "the embedded kafka broker did not stop within {STOP_LIMIT:?}: leaving it"
            );
            return;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
