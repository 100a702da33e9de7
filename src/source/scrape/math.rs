//! Prometheus's own arithmetic for `rate()` and `histogram_quantile()`, so our numbers agree.
//!
//! [`extrapolated_rate`] follows Prometheus 2.x `extrapolatedRate` for counters: samples in the
//! closed range `[end - window, end]`, counter resets add the value before the drop, and the
//! increase is extrapolated towards the range edges by at most half an average sample interval
//! (or to where the counter would have been zero). [`bucket_quantile`] follows `bucketQuantile`:
//! buckets sorted and coalesced by upper bound, counts forced monotonic, linear interpolation
//! inside the bucket holding the rank, and the highest finite bound when the rank lands in +Inf.

/// Per-second rate of a counter over the window ending at `end`, or `None` with fewer than two
/// samples in the window. `points` are `(time in seconds, value)` in time order; times before
/// `end - window` are ignored.
pub fn extrapolated_rate(points: &[(f64, f64)], end: f64, window: f64) -> Option<f64> {
    let start = end - window;
    let first_in = points.partition_point(|(t, _)| *t < start);
    let last_in = points.partition_point(|(t, _)| *t <= end);
    let pts = &points[first_in..last_in];
    if pts.len() < 2 {
        return None;
    }
    let (t_first, v_first) = pts[0];
    let (t_last, v_last) = pts[pts.len() - 1];
    let mut increase = v_last - v_first;
    let mut prev = v_first;
    for &(_, v) in &pts[1..] {
        if v < prev {
            // A reset: the counter restarted from zero, so everything before the drop counts.
            increase += prev;
        }
        prev = v;
    }
    let mut to_start = t_first - start;
    let to_end = end - t_last;
    let sampled = t_last - t_first;
    if sampled <= 0.0 {
        return None;
    }
    let avg_step = sampled / (pts.len() - 1) as f64;
    if increase > 0.0 && v_first >= 0.0 {
        // Do not extrapolate to before the counter would have been zero.
        let to_zero = sampled * (v_first / increase);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_step * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_step / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_step / 2.0
    };
    Some(increase * (interval / sampled) / window)
}

/// The `q` quantile of cumulative buckets `(upper bound, count)`, as `histogram_quantile` does.
/// NaN when there are no observations, fewer than two buckets, or no `+Inf` bucket.
pub fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    buckets.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 += later.1;
            true
        } else {
            false
        }
    });
    let mut max = f64::NEG_INFINITY;
    for b in buckets.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let n = buckets.len();
    let observations = buckets[n - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].partition_point(|x| x.1 < rank);
    if b == n - 1 {
        return buckets[n - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let end = buckets[b].0;
    let mut count = buckets[b].1;
    let mut start = 0.0;
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn steady_counter_rate_extrapolates_to_the_window() {
        // 10/s scraped every second, window 10 s, samples at 0.5..9.5 s: edges within threshold.
        let pts: Vec<_> = (0..10)
            .map(|i| (i as f64 + 0.5, 100.0 + 10.0 * i as f64))
            .collect();
        let r = extrapolated_rate(&pts, 10.0, 10.0).unwrap();
        assert!(close(r, 10.0), "{r}");
    }

    #[test]
    fn counter_reset_adds_the_value_before_the_drop() {
        // 0,10,20 | restart | 5,15: increase = 20 + 15 = 35 over 4 s sampled, edges at 0.
        let pts = [
            (0.0, 0.0),
            (1.0, 10.0),
            (2.0, 20.0),
            (3.0, 5.0),
            (4.0, 15.0),
        ];
        let r = extrapolated_rate(&pts, 4.0, 4.0).unwrap();
        assert!(close(r, 35.0 / 4.0), "{r}");
        assert!(r > 0.0);
    }

    #[test]
    fn extrapolation_stops_at_zero_and_at_half_a_step() {
        // A counter born at t=8 (value 2 at t=8, 12 at t=9): to_zero = 1 * 2/10 = 0.2 < 8.
        let pts = [(8.0, 2.0), (9.0, 12.0)];
        let r = extrapolated_rate(&pts, 10.0, 10.0).unwrap();
        // interval = sampled 1 + start 0.2 + end gap 1.0 (under the 1.1 threshold)
        assert!(close(r, 10.0 * (1.0 + 0.2 + 1.0) / 1.0 / 10.0), "{r}");
        // A series that ended long before the window's end extrapolates half a step only.
        let pts = [(0.0, 100.0), (1.0, 110.0), (2.0, 120.0)];
        let r = extrapolated_rate(&pts, 10.0, 10.0).unwrap();
        assert!(close(r, 20.0 * (2.0 + 0.0 + 0.5) / 2.0 / 10.0), "{r}");
    }

    #[test]
    fn fewer_than_two_samples_in_the_window_is_none() {
        assert_eq!(extrapolated_rate(&[(9.0, 1.0)], 10.0, 5.0), None);
        assert_eq!(
            extrapolated_rate(&[(1.0, 1.0), (2.0, 3.0)], 10.0, 5.0),
            None
        );
        assert_eq!(extrapolated_rate(&[], 10.0, 5.0), None);
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        let mut b = vec![
            (0.1, 50.0),
            (0.2, 90.0),
            (f64::INFINITY, 100.0),
            (0.05, 10.0),
        ];
        // rank 50 → in (0.05, 0.1]: 0.05 + 0.05 * (40/40) = 0.1
        assert!(close(bucket_quantile(0.5, &mut b.clone()), 0.1));
        // rank 70 → in (0.1, 0.2]: 0.1 + 0.1 * (20/40) = 0.15
        assert!(close(bucket_quantile(0.7, &mut b.clone()), 0.15));
        // rank 95 → +Inf bucket → highest finite bound
        assert_eq!(bucket_quantile(0.95, &mut b), 0.2);
    }

    #[test]
    fn quantile_edge_cases_match_prometheus() {
        let b = vec![(0.1, 5.0), (f64::INFINITY, 10.0)];
        assert!(bucket_quantile(f64::NAN, &mut b.clone()).is_nan());
        assert_eq!(bucket_quantile(-1.0, &mut b.clone()), f64::NEG_INFINITY);
        assert_eq!(bucket_quantile(2.0, &mut b.clone()), f64::INFINITY);
        assert!(bucket_quantile(0.5, &mut vec![(0.1, 5.0), (1.0, 10.0)]).is_nan());
        assert!(bucket_quantile(0.5, &mut vec![(0.1, 0.0), (f64::INFINITY, 0.0)]).is_nan());
        assert!(bucket_quantile(0.5, &mut vec![(f64::INFINITY, 3.0)]).is_nan());
        // Same bound from two pods is coalesced; a non-monotonic count is raised.
        let mut m = vec![(0.1, 2.0), (0.1, 3.0), (0.2, 4.0), (f64::INFINITY, 10.0)];
        // after coalesce: (0.1,5) (0.2,5) (inf,10); rank 5 → bucket 0: 0 + 0.1 * 5/5
        assert!(close(bucket_quantile(0.5, &mut m), 0.1));
        // A first bucket with a non-positive bound returns the bound.
        assert_eq!(
            bucket_quantile(0.1, &mut vec![(-1.0, 5.0), (f64::INFINITY, 10.0)]),
            -1.0
        );
    }
}
