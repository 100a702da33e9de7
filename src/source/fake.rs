//! A scripted metric source for tests of loops, the adapter and the engine's callers.

use std::collections::VecDeque;
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::metric::{MetricId, Reading};
use crate::source::{MetricSource, SourceError};

/// Answers reads from a script; when the script runs out, repeats its last answer.
#[derive(Debug)]
pub struct FakeSource {
    id: MetricId,
    script: Mutex<VecDeque<Result<Reading, SourceError>>>,
    last: Mutex<Option<Result<Reading, SourceError>>>,
    reads: Mutex<usize>,
}

impl FakeSource {
    /// A fake for `id` that answers `script` in order.
    pub fn new(
        id: MetricId,
        script: impl IntoIterator<Item = Result<Reading, SourceError>>,
    ) -> Self {
        Self {
            id,
            script: Mutex::new(script.into_iter().collect()),
            last: Mutex::new(None),
            reads: Mutex::new(0),
        }
    }

    /// Queues another answer.
    pub fn push(&self, answer: Result<Reading, SourceError>) {
        lock(&self.script).push_back(answer);
    }

    /// How many reads happened.
    pub fn reads(&self) -> usize {
        *lock(&self.reads)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MetricSource for FakeSource {
    fn id(&self) -> &MetricId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "fake"
    }

    fn read(&self) -> BoxFuture<'_, Result<Reading, SourceError>> {
        *lock(&self.reads) += 1;
        let answer = match lock(&self.script).pop_front() {
            Some(a) => {
                *lock(&self.last) = Some(a.clone());
                a
            }
            None => lock(&self.last).clone().unwrap_or_else(|| {
                Err(SourceError::NoData {
                    metric: self.id.clone(),
                    endpoint: "fake".into(),
                    why: "the script is empty".into(),
                })
            }),
        };
        Box::pin(async move { answer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[tokio::test]
    async fn answers_in_order_then_repeats_the_last() {
        let id = MetricId::new("t", "m");
        let f = FakeSource::new(
            id.clone(),
            [Ok(Reading::value(1.0, SystemTime::UNIX_EPOCH, "x"))],
        );
        f.push(Err(SourceError::NoData {
            metric: id,
            endpoint: "x".into(),
            why: "empty".into(),
        }));
        assert_eq!(f.read().await.unwrap().total(), 1.0);
        assert!(f.read().await.is_err());
        assert!(f.read().await.is_err());
        assert_eq!(f.reads(), 3);
    }

    #[tokio::test]
    async fn empty_script_is_no_data() {
        let f = FakeSource::new(MetricId::new("t", "m"), []);
        assert!(matches!(f.read().await, Err(SourceError::NoData { .. })));
    }
}
