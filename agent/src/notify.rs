//! High-watermark notifications for long-polling fetches.
//!
//! One `watch` channel per partition that someone waits on. Two sources feed
//! it: this agent's own commits ([`Notifier::publish`], immediate), and a
//! per-partition task holding a metadata watch, which sees commits made by
//! *other* agents. The task lives exactly as long as the partition has
//! waiters. Waiters subscribe *before* reading the high-watermark, so no
//! commit can slip between their read and their wait.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use silt_metadata::Metadata;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

type Key = (u64, u32);

#[derive(Debug)]
pub struct Notifier {
    md: Arc<Metadata>,
    channels: Mutex<HashMap<Key, watch::Sender<u64>>>,
    shutdown: CancellationToken,
}

impl Notifier {
    pub fn new(md: Arc<Metadata>, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            md,
            channels: Mutex::default(),
            shutdown,
        })
    }

    /// A receiver that changes whenever the partition's high-watermark grows.
    pub fn subscribe(self: &Arc<Self>, topic_id: u64, partition: u32) -> watch::Receiver<u64> {
        let key = (topic_id, partition);
        let mut channels = self.channels.lock();
        if let Some(tx) = channels.get(&key) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(0);
        channels.insert(key, tx.clone());
        tokio::spawn(self.clone().follow(key, tx));
        rx
    }

    /// Announces a high-watermark this agent just committed.
    pub fn publish(&self, topic_id: u64, partition: u32, high_watermark: u64) {
        if let Some(tx) = self.channels.lock().get(&(topic_id, partition)) {
            raise(tx, high_watermark);
        }
    }

    /// Follows the partition's metadata until nobody waits on it.
    async fn follow(self: Arc<Self>, key: Key, tx: watch::Sender<u64>) {
        loop {
            let state = match self.md.partition_state(key.0, key.1).await {
                Ok(Some(s)) => s,
                // Gone: wake waiters so they see it, and stop.
                Ok(None) => {
                    tx.send_modify(|_| {});
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "partition watch: read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            raise(&tx, state.high_watermark);
            tokio::select! {
                r = self.md.watch_partition(key.0, key.1, state) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "partition watch failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                () = tx.closed() => {
                    let mut channels = self.channels.lock();
                    if tx.receiver_count() == 0 {
                        channels.remove(&key);
                        return;
                    }
                }
                () = self.shutdown.cancelled() => break,
            }
        }
        self.channels.lock().remove(&key);
    }
}

fn raise(tx: &watch::Sender<u64>, hwm: u64) {
    tx.send_if_modified(|v| {
        let grew = hwm > *v;
        if grew {
            *v = hwm;
        }
        grew
    });
}
