//! Burns a given amount of CPU time on real work, for CPU-based scaling to measure.

use crate::clock;
use std::time::Duration;

/// Spins on a hash computation until this thread has used about `budget` of CPU time.
///
/// CPU time, not wall time: under contention the request takes longer, as real CPU-bound work
/// does. Returns the work's checksum (so it cannot be optimized away) and the CPU time used.
pub fn burn(budget: Duration) -> (u64, Duration) {
    let Some(start) = thread_cpu_time() else {
        return burn_wall(budget);
    };
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    loop {
        // About 50-100 µs of hashing between clock reads keeps the overhead of reading
        // /proc/thread-self/schedstat to a few percent.
        for i in 0..20_000u64 {
            state = fnv_step(state, i);
        }
        let used = thread_cpu_time()
            .map(|now| now.saturating_sub(start))
            .unwrap_or(budget);
        if used >= budget {
            return (state, used);
        }
    }
}

fn fnv_step(state: u64, i: u64) -> u64 {
    (state ^ i)
        .wrapping_mul(0x0000_0100_0000_01b3)
        .rotate_left(5)
}

/// Nanoseconds this thread has spent on a CPU, from the scheduler's own accounting.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Fallback where the scheduler's accounting is not readable: wall time.
fn burn_wall(budget: Duration) -> (u64, Duration) {
    let start = clock::Stopwatch::start();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut i = 0u64;
    while start.elapsed() < budget {
        state = fnv_step(state, i);
        i += 1;
    }
    (state, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burns_at_least_the_budget_and_not_much_more() {
        let (_, used) = burn(Duration::from_millis(30));
        assert!(used >= Duration::from_millis(30), "{used:?}");
        assert!(used < Duration::from_millis(60), "{used:?}");
    }
}
