//! The compactor: merges small segments, archives to Parquet, enforces
//! retention and collects garbage. Not built yet: it has its own issue.
//! Nothing in the agent depends on it.
