//! High-watermark notifications for long-polling fetches.
//!
//! One `watch` channel per partition that someone waits on. Two sources feed
//! them: this agent's own commits ([`Notifier::publish`], immediate), and ONE
//! follower task per agent holding ONE metadata watch, on the `LogChanged`
//! mark that every commit anywhere moves: when it fires, the follower reads
//! the states of every partition waited on (one read, at one version) and
//! raises their channels. So the metadata store carries one watch per
//! agent however many partitions are tailed (FoundationDB's default cap is
//! 10,000 watches per client), and commits from other agents wake long-polls
//! within one watch round trip.
//!
//! No wake-up is lost: waiters subscribe *before* reading the high-watermark;
//! a new partition's subscription makes the follower read again (so a commit
//! between the follower's last read and the subscription is seen), and any
//! commit after a read moves the mark that read returned.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use silt_metadata::Metadata;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

type Key = (u64, u32);

#[derive(Debug)]
pub struct Notifier {
    md: Arc<Metadata>,
    channels: Mutex<HashMap<Key, watch::Sender<u64>>>,
    /// Poked when a partition gets its first waiter.
    subscribed: Notify,
    follower: Mutex<Option<tokio::task::JoinHandle<()>>>,
    shutdown: CancellationToken,
}

impl Notifier {
    pub fn new(md: Arc<Metadata>, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            md,
            channels: Mutex::default(),
            subscribed: Notify::new(),
            follower: Mutex::default(),
            shutdown,
        })
    }

    /// A receiver that changes whenever the partition's high-watermark grows.
    pub fn subscribe(self: &Arc<Self>, topic_id: u64, partition: u32) -> watch::Receiver<u64> {
        let key = (topic_id, partition);
        let rx = {
            let mut channels = self.channels.lock();
            if let Some(tx) = channels.get(&key) {
                return tx.subscribe();
            }
            let (tx, rx) = watch::channel(0);
            channels.insert(key, tx);
            rx
        };
        let mut follower = self.follower.lock();
        if follower.is_none() {
            *follower = Some(tokio::spawn(self.clone().follow()));
        }
        self.subscribed.notify_one();
        rx
    }

    /// Announces a high-watermark this agent just committed.
    pub fn publish(&self, topic_id: u64, partition: u32, high_watermark: u64) {
        if let Some(tx) = self.channels.lock().get(&(topic_id, partition)) {
            raise(tx, high_watermark);
        }
    }

    /// Reads the waited-on partitions whenever the log changes, until the
    /// agent shuts down.
    async fn follow(self: Arc<Self>) {
        loop {
            // Partitions nobody waits on any more are dropped here.
            let keys: Vec<Key> = {
                let mut channels = self.channels.lock();
                channels.retain(|_, tx| tx.receiver_count() > 0);
                channels.keys().copied().collect()
            };
            let mark = if keys.is_empty() {
                None
            } else {
                match self.md.log_states(&keys).await {
                    Ok((mark, states)) => {
                        self.raise_all(&keys, states);
                        Some(mark)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "long-poll follower: read failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            };
            tokio::select! {
                r = self.md.watch_log(mark.as_ref().and_then(|m| m.as_deref())), if mark.is_some() => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "long-poll follower: watch failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                () = self.subscribed.notified() => {}
                () = self.shutdown.cancelled() => break,
            }
        }
        self.channels.lock().clear();
    }

    fn raise_all(&self, keys: &[Key], states: Vec<Option<silt_metadata::PartitionState>>) {
        let mut channels = self.channels.lock();
        for (key, state) in keys.iter().zip(states) {
            match state {
                Some(s) => {
                    if let Some(tx) = channels.get(key) {
                        raise(tx, s.high_watermark);
                    }
                }
                // Gone: wake its waiters so they see it.
                None => {
                    if let Some(tx) = channels.remove(key) {
                        tx.send_modify(|_| {});
                    }
                }
            }
        }
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
