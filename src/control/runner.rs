//! One policy's task: a [`PolicyLoop`] and the status it writes, run side by side until the
//! policy is stopped. Shared by the cluster controller and the many-policies benchmark.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::policy_loop::PolicyLoop;
use super::status::{PolicyRef, StatusSink, StatusTracker, Update};
use crate::clock::{self, Clock};

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs `lp` until `stop`, handing every tick to `tracker` and writing what changed to `sink`.
pub async fn drive(
    lp: PolicyLoop,
    mut tracker: StatusTracker,
    sink: Arc<dyn StatusSink>,
    policy: PolicyRef,
    stop: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (ftx, mut frx) = mpsc::unbounded_channel();
    let lp = lp.with_records(tx).with_failures(ftx);
    let clock = Clock::start();
    let consume = async {
        loop {
            let update = tokio::select! {
                Some((record, decision)) = rx.recv() => {
                    let (now, wall) = clock.now();
                    tracker.tick(&record, Some(&decision), now, wall)
                }
                Some(record) = frx.recv() => {
                    let (now, wall) = clock.now();
                    tracker.tick(&record, None, now, wall)
                }
                else => break,
            };
            write(&*sink, &policy, update).await;
        }
    };
    tokio::join!(lp.run(stopped(stop)), consume);
}

/// Writes one update: the status, then its events; failures are logged, never fatal.
pub async fn write(sink: &dyn StatusSink, policy: &PolicyRef, update: Update) {
    if let Some(status) = &update.status
        && let Err(e) = sink.write_status(policy, status).await
    {
        tracing::warn!(policy = %policy.key, "status write failed: {e}");
    }
    for event in &update.events {
        if let Err(e) = sink.publish(policy, event).await {
            tracing::warn!(policy = %policy.key, reason = %event.reason, "event failed: {e}");
        }
    }
}

/// A tracker update for a policy that does not run, written at once.
pub async fn hold(
    tracker: &mut StatusTracker,
    sink: &dyn StatusSink,
    policy: &PolicyRef,
    why: &super::status::NotReady,
) {
    let clock = Clock::start();
    let update = tracker.not_ready(why, clock::now(), clock.now().1);
    write(sink, policy, update).await;
}
