//! The latest reading of every metric: loops write, the adapter and status readers read.
//!
//! Each metric has exactly one writer (a [`StoreWriter`], handed out once per [`MetricId`]) and
//! any number of readers. Memory is bounded: the store holds at most `capacity` metrics, only the
//! newest reading of each, and a metric disappears when its writer is dropped.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::metric::{MetricId, Reading};

/// Why a writer could not be handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer already owns this metric.
    #[error("metric {0} already has a writer")]
    AlreadyOwned(MetricId),
    /// The store holds `capacity` metrics already.
    #[error("sample store is full ({capacity} metrics); cannot add {metric}")]
    Full {
        /// The metric that did not fit.
        metric: MetricId,
        /// The configured bound.
        capacity: usize,
    },
}

/// What the store knows about one metric.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latest {
    /// The newest successful reading.
    pub reading: Option<Arc<Reading>>,
    /// The newest failure, if it is more recent than `reading`.
    pub error: Option<Arc<str>>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    entries: RwLock<HashMap<MetricId, Latest>>,
}

/// Latest readings by metric; cheap to clone, shared by all readers.
#[derive(Clone, Debug)]
pub struct SampleStore {
    inner: Arc<Inner>,
}

/// The single writer of one metric; dropping it removes the metric from the store.
#[derive(Debug)]
pub struct StoreWriter {
    id: MetricId,
    inner: Arc<Inner>,
}

impl SampleStore {
    /// A store holding at most `capacity` metrics.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity,
                entries: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Claims the right to write `id`.
    pub fn writer(&self, id: MetricId) -> Result<StoreWriter, StoreError> {
        let mut entries = write(&self.inner.entries);
        if entries.contains_key(&id) {
            return Err(StoreError::AlreadyOwned(id));
        }
        if entries.len() >= self.inner.capacity {
            return Err(StoreError::Full {
                metric: id,
                capacity: self.inner.capacity,
            });
        }
        entries.insert(id.clone(), Latest::default());
        Ok(StoreWriter {
            id,
            inner: self.inner.clone(),
        })
    }

    /// The latest state of `id`, if it has a writer.
    pub fn latest(&self, id: &MetricId) -> Option<Latest> {
        read(&self.inner.entries).get(id).cloned()
    }

    /// Every metric with a writer, sorted.
    pub fn metrics(&self) -> Vec<MetricId> {
        let mut ids: Vec<_> = read(&self.inner.entries).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// How many metrics have a writer.
    pub fn len(&self) -> usize {
        read(&self.inner.entries).len()
    }

    /// True when no metric has a writer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StoreWriter {
    /// The metric this writer owns.
    pub fn id(&self) -> &MetricId {
        &self.id
    }

    /// Replaces the metric's reading; clears a previous error.
    pub fn put(&self, reading: Reading) {
        if let Some(e) = write(&self.inner.entries).get_mut(&self.id) {
            e.reading = Some(Arc::new(reading));
            e.error = None;
        }
    }

    /// Records a failed read; the last good reading stays available beside it.
    pub fn fail(&self, error: impl std::fmt::Display) {
        if let Some(e) = write(&self.inner.entries).get_mut(&self.id) {
            e.error = Some(error.to_string().into());
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        write(&self.inner.entries).remove(&self.id);
    }
}

// A writer panicking mid-update leaves a map that is still consistent (single inserts), so a
// poisoned lock is safe to keep using.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn id(n: &str) -> MetricId {
        MetricId::new("ns/p", n)
    }

    #[test]
    fn one_writer_per_metric_and_readers_see_latest() {
        let store = SampleStore::new(4);
        let w = store.writer(id("rps")).unwrap();
        assert_eq!(
            store.writer(id("rps")).unwrap_err(),
            StoreError::AlreadyOwned(id("rps"))
        );
        assert_eq!(store.latest(&id("rps")).unwrap().reading, None);
        w.put(Reading::value(1.0, SystemTime::UNIX_EPOCH, "a"));
        w.put(Reading::value(2.0, SystemTime::UNIX_EPOCH, "a"));
        let reader = store.clone();
        assert_eq!(
            reader.latest(&id("rps")).unwrap().reading.unwrap().total(),
            2.0
        );
        w.fail("timeout");
        let l = reader.latest(&id("rps")).unwrap();
        assert_eq!(l.error.as_deref(), Some("timeout"));
        assert_eq!(l.reading.unwrap().total(), 2.0);
        w.put(Reading::value(3.0, SystemTime::UNIX_EPOCH, "a"));
        assert_eq!(reader.latest(&id("rps")).unwrap().error, None);
    }

    #[test]
    fn bounded_and_dropping_a_writer_frees_its_slot() {
        let store = SampleStore::new(2);
        let a = store.writer(id("a")).unwrap();
        let _b = store.writer(id("b")).unwrap();
        assert!(matches!(
            store.writer(id("c")),
            Err(StoreError::Full { capacity: 2, .. })
        ));
        drop(a);
        assert_eq!(store.metrics(), vec![id("b")]);
        let _c = store.writer(id("c")).unwrap();
        assert_eq!(store.len(), 2);
    }
}
