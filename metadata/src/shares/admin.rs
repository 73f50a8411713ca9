//! Share groups' lifecycle and descriptions: create, read, list and
//! delete a group, record where its dead-letter replay reached, and read
//! its windows (snapshot reads: descriptions, not decisions).

use super::{
    MAX_IN_FLIGHT, MAX_SHARE_GROUP, WindowView, key_window, read_group, read_records, view_of,
};
use crate::catalog::{topic_id_by_name, validate_id};
use crate::keys::{Key, KeyRange};
use crate::values::groups::{decode_json, encode_json};
use crate::values::shares::{ShareGroupRecord, ShareWindow};
use crate::{Error, Metadata, Result};

impl Metadata {
    /// Creates a share group; `AlreadyExists` if one has the name. The
    /// record's topics name topics by name; their ids are resolved here.
    pub async fn create_share_group(&self, group: &str, record: ShareGroupRecord) -> Result<()> {
        validate_id("share group name", group, MAX_SHARE_GROUP)?;
        if record.topics.is_empty() || record.max_deliveries == 0 || record.lease_ms == 0 {
            return Err(Error::Invalid(
                "a share group needs topics, a lease and at least one delivery".into(),
            ));
        }
        if !(1..=MAX_IN_FLIGHT).contains(&record.max_in_flight) {
            return Err(Error::Invalid(format!(
                "max_in_flight is 1 to {MAX_IN_FLIGHT}"
            )));
        }
        self.run("create_share_group", false, |txn, _| {
            let mut record = record.clone();
            let group = group.to_owned();
            Box::pin(async move {
                let group = group.as_str();
                let key = Key::ShareGroup(group).encode();
                if let Some(b) = txn.get(&key, false).await? {
                    let old: ShareGroupRecord = decode_json(&b, "share group")?;
                    // A retry after an unknown result finds its own group.
                    if old.created_ms == record.created_ms {
                        return Ok(());
                    }
                    return Err(Error::GroupExists(group.to_owned()));
                }
                for t in &mut record.topics {
                    t.id = topic_id_by_name(txn, &t.name, false)
                        .await?
                        .ok_or_else(|| Error::TopicNotFound(t.name.clone()))?;
                }
                txn.set(&key, &encode_json(&record));
                Ok(())
            })
        })
        .await
    }

    pub async fn share_group(&self, group: &str) -> Result<Option<ShareGroupRecord>> {
        self.run("share_group", true, |txn, _| {
            let group = group.to_owned();
            Box::pin(async move {
                let group = group.as_str();
                match txn.get(&Key::ShareGroup(group).encode(), true).await? {
                    Some(b) => decode_json(&b, "share group").map(Some),
                    None => Ok(None),
                }
            })
        })
        .await
    }

    /// Share group names, in order, at most `limit` after `after`.
    pub async fn list_share_groups(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.run("list_share_groups", true, |txn, _| {
            let after = after.map(str::to_owned);
            Box::pin(async move {
                let after = after.as_deref();
                let all = KeyRange::kind(crate::keys::KeyKind::ShareGroup);
                let begin = match after {
                    Some(a) => {
                        let mut k = Key::ShareGroup(a).encode();
                        k.push(0);
                        k
                    }
                    None => all.begin,
                };
                let rows = txn.get_range(&begin, &all.end, limit, false, true).await?;
                rows.iter()
                    .map(|(k, _)| match crate::keys::decode(k) {
                        Ok(Key::ShareGroup(g)) => Ok(g.to_owned()),
                        _ => Err(Error::Corrupt("share group key")),
                    })
                    .collect()
            })
        })
        .await
    }

    /// Deletes a share group and all its state.
    pub async fn delete_share_group(&self, group: &str) -> Result<()> {
        self.run("delete_share_group", false, |txn, _| {
            let group = group.to_owned();
            Box::pin(async move {
                let group = group.as_str();
                read_group(txn, group).await?;
                txn.clear(&Key::ShareGroup(group).encode());
                for r in [
                    KeyRange::share_windows(group),
                    KeyRange::share_records(group),
                ] {
                    txn.clear_range(&r.begin, &r.end);
                }
                Ok(())
            })
        })
        .await
    }

    /// Records where the dead-letter replay of `group` has reached.
    pub async fn set_share_replayed(&self, group: &str, replayed: Vec<u64>) -> Result<()> {
        self.run("set_share_replayed", false, |txn, _| {
            let replayed = replayed.clone();
            let group = group.to_owned();
            Box::pin(async move {
                let group = group.as_str();
                let mut g = read_group(txn, group).await?;
                g.replayed = replayed;
                txn.set(&Key::ShareGroup(group).encode(), &encode_json(&g));
                Ok(())
            })
        })
        .await
    }

    /// One partition's window, if the group has read from it.
    pub async fn share_window(
        &self,
        group: &str,
        topic_id: u64,
        partition: u32,
    ) -> Result<Option<ShareWindow>> {
        self.run("share_window", true, |txn, _| {
            let key = key_window(group, topic_id, partition);
            Box::pin(async move {
                match txn.get(&key, true).await? {
                    Some(b) => ShareWindow::decode(&b).map(Some),
                    None => Ok(None),
                }
            })
        })
        .await
    }

    /// Every window of a share group with counts of its tracked records
    /// (snapshot reads: a description, not a decision).
    pub async fn share_windows(&self, group: &str) -> Result<Vec<WindowView>> {
        self.run("share_windows", true, |txn, _| {
            let group = group.to_owned();
            Box::pin(async move {
                let group = group.as_str();
                let r = KeyRange::share_windows(group);
                let rows = txn
                    .get_range(&r.begin, &r.end, usize::MAX, false, true)
                    .await?;
                let mut views = Vec::with_capacity(rows.len());
                for (k, v) in rows {
                    let Ok(Key::ShareWindow(_, t, p)) = crate::keys::decode(&k) else {
                        return Err(Error::Corrupt("share window key"));
                    };
                    let window = ShareWindow::decode(&v)?;
                    let records = read_records(txn, group, t, p, &window).await?;
                    views.push(view_of(t, p, window, &records));
                }
                Ok(views)
            })
        })
        .await
    }
}
