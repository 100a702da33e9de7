//! A fixed pool of worker slots with a bounded wait queue, like a gunicorn worker pool.
//!
//! `/work` holds a slot without using CPU, so a replica's capacity is `workers / duration`
//! whatever the machine's core count: past it, requests queue and latency climbs, and only more
//! replicas bring it down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Worker slots and the queue in front of them.
#[derive(Clone, Debug)]
pub struct WorkerPool {
    slots: Arc<Semaphore>,
    workers: usize,
    queue_capacity: usize,
    waiting: Arc<AtomicUsize>,
    busy_gauge: Gauge,
    queue_gauge: Gauge,
}

/// Leaves the queue (and its gauge) even if the waiting request is cancelled.
struct QueueSeat<'a>(&'a WorkerPool);

impl Drop for QueueSeat<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.queue_gauge.dec();
    }
}

impl WorkerPool {
    /// A pool of `workers` slots with room for `queue_capacity` waiting requests.
    pub fn new(
        workers: usize,
        queue_capacity: usize,
        busy_gauge: Gauge,
        queue_gauge: Gauge,
    ) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(workers)),
            workers,
            queue_capacity,
            waiting: Arc::new(AtomicUsize::new(0)),
            busy_gauge,
            queue_gauge,
        }
    }

    /// Holds one slot for `hold`, waiting in the queue first if all are busy.
    pub async fn work(&self, hold: Duration) -> Result<(), ApiError> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_capacity {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(ApiError::QueueFull {
                        workers: self.workers,
                        queue: self.queue_capacity,
                    });
                }
                self.queue_gauge.inc();
                let _seat = QueueSeat(self);
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        self.busy_gauge.inc();
        tokio::time::sleep(hold).await;
        self.busy_gauge.dec();
        drop(permit);
        Ok(())
    }

    /// Slots held right now.
    pub fn busy(&self) -> usize {
        self.workers - self.slots.available_permits()
    }

    /// Requests waiting right now.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    #[tokio::test(start_paused = true)]
    async fn capacity_is_workers_over_duration_and_the_queue_is_bounded() {
        let pool = WorkerPool::new(2, 1, Gauge::default(), Gauge::default());
        let start = clock::now();
        let a = tokio::spawn({
            let p = pool.clone();
            async move { p.work(Duration::from_millis(100)).await }
        });
        let b = tokio::spawn({
            let p = pool.clone();
            async move { p.work(Duration::from_millis(100)).await }
        });
        let c = tokio::spawn({
            let p = pool.clone();
            async move { p.work(Duration::from_millis(100)).await }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(pool.busy(), 2);
        assert_eq!(pool.queued(), 1);
        // The queue holds one: a fourth request is refused at once.
        let err = pool.work(Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(
            err,
            ApiError::QueueFull {
                workers: 2,
                queue: 1
            }
        ));
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
        c.await.unwrap().unwrap();
        // The queued one ran after the first two: 200 ms in all.
        assert_eq!(clock::since(start).as_millis(), 200);
        assert_eq!((pool.busy(), pool.queued()), (0, 0));
    }
}
