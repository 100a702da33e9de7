//! One metric's proposal: the HPA's replica calculation per target type (§4.4), with the pod
//! grouping of §4.5. Values are milli-units; ratios and ceilings use `f64` exactly as Go does.

use super::Replicas;
use super::decision::Usage;
use super::observation::{Observation, PodFacts, PodPhase, PodValues, Reading};
use super::policy::{MetricPolicy, ReadinessTiming, Resource, Target, Tolerance};
use super::time::{Seconds, Time};

/// A computed proposal, before it is named.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Computed {
    pub replicas: Replicas,
    pub ratio: f64,
    pub usage: Usage,
    pub within_tolerance: bool,
    /// The unrounded count the reading implies (see `Proposal::demand`).
    pub demand: f64,
}

/// Everything the calculation reads besides the metric and its reading.
pub(super) struct Context<'a> {
    pub obs: &'a Observation,
    pub tolerance: Tolerance,
    pub timing: ReadinessTiming,
    pub now: Time,
}

/// `ceil(x)` as a replica count, capped at `i32::MAX` like the HPA (a NaN proposes 0).
fn ceil_replicas(x: f64) -> Replicas {
    let c = x.ceil();
    if c.is_nan() || c <= 0.0 {
        Replicas(0)
    } else if c >= f64::from(i32::MAX) {
        Replicas(i32::MAX)
    } else {
        Replicas(c as i32)
    }
}

/// The proposal of one metric, or the error that makes it invalid (§4.6).
pub(super) fn propose(
    metric: &MetricPolicy,
    reading: &Reading,
    cx: &Context<'_>,
) -> Result<Computed, String> {
    let current = cx.obs.current;
    match (reading, metric.target) {
        (Reading::PerPod(v), target) if v.values.len() != cx.obs.pods.len() => Err(format!(
            "{} per-pod values for {} pods (the observation is inconsistent; target {target:?})",
            v.values.len(),
            cx.obs.pods.len()
        )),
        (Reading::PerPod(v), Target::Utilization(u)) => {
            let Some(resource) = metric.resource else {
                return Err("Utilization needs a resource metric".into());
            };
            per_pod(v, PerPodTarget::Utilization(u, resource), metric, cx)
        }
        (Reading::PerPod(v), Target::AverageValue(t)) => {
            per_pod(v, PerPodTarget::Average(t), metric, cx)
        }
        (Reading::PerPod(v), Target::Value(t)) => {
            let total = v.values.iter().flatten().chain(&v.extra).sum();
            value(total, t, current, cx)
        }
        (Reading::Total(total), Target::Value(t)) => value(*total, t, current, cx),
        (Reading::Total(total), Target::AverageValue(t)) => Ok(total_average(
            *total,
            t,
            cx.obs.status_replicas,
            cx.tolerance,
        )),
        (Reading::Total(_), Target::Utilization(_)) => {
            Err("Utilization needs per-pod readings and requests".into())
        }
    }
}

/// §4.4.3: one value compared with `value`.
fn value(usage: i64, target: i64, current: Replicas, cx: &Context<'_>) -> Result<Computed, String> {
    let ratio = usage as f64 / target as f64;
    let ready = cx
        .obs
        .pods
        .iter()
        .filter(|p| p.is_running_and_ready())
        .count() as f64;
    let computed = |replicas, within_tolerance, demand| Computed {
        replicas,
        ratio,
        usage: Usage::Total(usage),
        within_tolerance,
        demand,
    };
    if current.0 == 0 {
        // Scale from zero: the ratio itself.
        return Ok(computed(ceil_replicas(ratio), false, ratio));
    }
    if cx.tolerance.within(ratio) {
        // No ready pod to multiply (a held tick): the count kept is what the ratio scales.
        let pods = if ready > 0.0 {
            ready
        } else {
            f64::from(current.0)
        };
        return Ok(computed(current, true, ratio * pods));
    }
    if cx.obs.pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    Ok(computed(ceil_replicas(ratio * ready), false, ratio * ready))
}

/// §4.4.4: a total compared with `averageValue` per replica of `status.replicas`.
fn total_average(usage: i64, target: i64, status: Replicas, tolerance: Tolerance) -> Computed {
    let ratio = usage as f64 / (target as f64 * f64::from(status.0));
    let within = tolerance.within(ratio);
    let replicas = if within {
        status
    } else {
        ceil_replicas(usage as f64 / target as f64)
    };
    let per_replica = (status.0 > 0)
        .then(|| (usage as f64 / f64::from(status.0)).ceil())
        .map(|x| x.clamp(i64::MIN as f64, i64::MAX as f64) as i64);
    Computed {
        replicas,
        ratio,
        usage: Usage::TotalPerReplica {
            total: usage,
            per_replica,
        },
        within_tolerance: within,
        demand: usage as f64 / target as f64,
    }
}

#[derive(Clone, Copy)]
enum PerPodTarget {
    Utilization(i32, Resource),
    Average(i64),
}

/// How a pod counts for one metric (§4.5).
enum Group {
    Ignored,
    Unready,
    Missing,
    Ready(i64),
}

fn group(pod: &PodFacts, value: Option<i64>, cpu: bool, v: &PodValues, cx: &Context<'_>) -> Group {
    if pod.deleting || pod.phase == PodPhase::Failed {
        return Group::Ignored;
    }
    if pod.phase == PodPhase::Pending {
        return Group::Unready;
    }
    let Some(value) = value else {
        return Group::Missing;
    };
    if cpu && cpu_unready(pod, v.timestamp, v.window, cx.timing, cx.now) {
        return Group::Unready;
    }
    Group::Ready(value)
}

/// R4.11: CPU samples of pods that are starting, or never became ready, are not trusted.
fn cpu_unready(
    pod: &PodFacts,
    sampled: Time,
    window: Seconds,
    timing: ReadinessTiming,
    now: Time,
) -> bool {
    let (Some(ready), Some(started)) = (pod.ready, pod.started) else {
        return true;
    };
    if started + timing.cpu_initialization_period > now {
        !ready.status || sampled < ready.since + window
    } else {
        !ready.status && started + timing.initial_readiness_delay > ready.since
    }
}

/// Sums over the pods of one calculation (the HPA's metrics map, without building it).
#[derive(Default)]
struct Sums {
    /// Σ metric values of the entries that have a request (utilization) or of all (average).
    metrics: i128,
    /// Σ requests of those entries (utilization only).
    requests: i128,
    /// Entries in the metrics map, extraneous pods included.
    entries: i64,
}

impl Sums {
    fn ratio(&self, target: PerPodTarget) -> (f64, Usage) {
        match target {
            PerPodTarget::Utilization(u, _) => {
                let util =
                    (self.metrics * 100 / self.requests).clamp(0, i128::from(i32::MAX)) as i32;
                (f64::from(util) / f64::from(u), Usage::Utilization(util))
            }
            PerPodTarget::Average(t) => {
                let avg = (self.metrics / i128::from(self.entries))
                    .clamp(i128::from(i64::MIN), i128::from(i64::MAX))
                    as i64;
                (avg as f64 / t as f64, Usage::PerPod(avg))
            }
        }
    }
}

/// The pods of a per-pod reading, grouped as §4.5 says: the ready pods' sums, and what the
/// missing and unready pods would add when they are filled in (step 6).
#[derive(Default)]
struct Tally {
    sums: Sums,
    ready: i64,
    missing: i64,
    missing_requests: i128,
    missing_fallback: i128,
    unready: i64,
    unready_requests: i128,
}

/// A pod's request of the measured resource, for utilization (0 for plain averages).
fn request_of(pod: &PodFacts, target: PerPodTarget) -> Result<i128, String> {
    let PerPodTarget::Utilization(_, resource) = target else {
        return Ok(0);
    };
    let (request, name) = match resource {
        Resource::Cpu => (pod.requests.cpu, "cpu"),
        Resource::Memory => (pod.requests.memory, "memory"),
    };
    let request =
        request.ok_or_else(|| format!("missing request for {name} in pod {}", pod.name))?;
    Ok(i128::from(request))
}

fn tally(
    v: &PodValues,
    target: PerPodTarget,
    cpu: bool,
    cx: &Context<'_>,
) -> Result<Tally, String> {
    let mut t = Tally::default();
    for (pod, value) in cx.obs.pods.iter().zip(&v.values) {
        let request = request_of(pod, target)?;
        match group(pod, *value, cpu, v, cx) {
            Group::Ignored => {}
            Group::Unready => {
                t.unready += 1;
                t.unready_requests += request;
            }
            Group::Missing => {
                t.missing += 1;
                t.missing_requests += request;
                t.missing_fallback += match target {
                    // Recent HPA: at least 100 % of the request, or the target if higher.
                    PerPodTarget::Utilization(u, _) => request * i128::from(u.max(100)) / 100,
                    PerPodTarget::Average(avg) => i128::from(avg),
                };
            }
            Group::Ready(m) => {
                t.ready += 1;
                t.sums.metrics += i128::from(m);
                t.sums.requests += request;
                t.sums.entries += 1;
            }
        }
    }
    // Values for pods outside the list stay in the map: counted in plain averages, and in the
    // entry count of utilization (where they have no request and add nothing to the sums).
    t.sums.entries += v.extra.len() as i64;
    if !matches!(target, PerPodTarget::Utilization(..)) {
        t.sums.metrics += v.extra.iter().map(|x| i128::from(*x)).sum::<i128>();
    }
    Ok(t)
}

/// §4.4.1 (Utilization) and §4.4.2 (AverageValue over per-pod values).
fn per_pod(
    v: &PodValues,
    target: PerPodTarget,
    metric: &MetricPolicy,
    cx: &Context<'_>,
) -> Result<Computed, String> {
    let current = cx.obs.current;
    if cx.obs.pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let cpu = metric.resource == Some(Resource::Cpu);
    let mut t = tally(v, target, cpu, cx)?;
    if t.sums.entries == 0 {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    if matches!(target, PerPodTarget::Utilization(..)) && t.sums.requests == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let (ratio, usage) = t.sums.ratio(target);
    let computed = |replicas, within_tolerance, demand| Computed {
        replicas,
        ratio,
        usage,
        within_tolerance,
        demand,
    };
    let scale_up_with_unready = t.unready > 0 && ratio > 1.0;
    if !scale_up_with_unready && t.missing == 0 {
        let demand = ratio * t.ready as f64;
        if cx.tolerance.within(ratio) {
            return Ok(computed(current, true, demand));
        }
        return Ok(computed(ceil_replicas(demand), false, demand));
    }
    // Step 6: fill in missing pods (at the target/request on a scale-down, 0 on a scale-up),
    // and unready pods at 0 on a scale-up; then recompute.
    if t.missing > 0 {
        if ratio < 1.0 {
            t.sums.metrics += t.missing_fallback;
            t.sums.requests += t.missing_requests;
            t.sums.entries += t.missing;
        } else if ratio > 1.0 {
            t.sums.requests += t.missing_requests;
            t.sums.entries += t.missing;
        }
    }
    if scale_up_with_unready {
        t.sums.requests += t.unready_requests;
        t.sums.entries += t.unready;
    }
    let (new_ratio, _) = t.sums.ratio(target);
    // The refilled calculation is the one the count follows, so it is also the demand.
    let demand = new_ratio * t.sums.entries as f64;
    let within = cx.tolerance.within(new_ratio);
    let flipped = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if within || flipped {
        return Ok(computed(current, within, demand));
    }
    let n = ceil_replicas(demand);
    if (new_ratio < 1.0 && n > current) || (new_ratio > 1.0 && n < current) {
        return Ok(computed(current, false, demand));
    }
    Ok(computed(n, false, demand))
}
