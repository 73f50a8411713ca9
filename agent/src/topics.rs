//! A short-lived cache of topic lookups: produce and fetch need the topic's
//! id and partition count on every request, which must not cost a metadata
//! read each time. Staleness is bounded by the TTL and is harmless: a commit
//! to a deleted topic is rejected by the metadata transaction itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use silt_metadata::{Metadata, TopicInfo};
use tokio::time::Instant;

use crate::{Error, Result};

#[derive(Debug)]
pub struct TopicCache {
    md: Arc<Metadata>,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Arc<TopicInfo>, Instant)>>,
}

/// Bound on cached names; the cache is cleared when it is exceeded.
const MAX_ENTRIES: usize = 100_000;

impl TopicCache {
    pub fn new(md: Arc<Metadata>, ttl: Duration) -> Self {
        Self {
            md,
            ttl,
            entries: Mutex::default(),
        }
    }

    pub async fn get(&self, name: &str) -> Result<Arc<TopicInfo>> {
        if let Some((t, at)) = self.entries.lock().get(name) {
            if at.elapsed() < self.ttl {
                return Ok(t.clone());
            }
        }
        let topic = Arc::new(
            self.md
                .topic(name)
                .await?
                .ok_or_else(|| Error::TopicNotFound(name.to_owned()))?,
        );
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(name.to_owned(), (topic.clone(), Instant::now()));
        Ok(topic)
    }

    pub fn invalidate(&self, name: &str) {
        self.entries.lock().remove(name);
    }
}
