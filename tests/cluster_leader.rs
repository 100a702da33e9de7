//! Two `tidescale run` processes on one Lease against the real API server: exactly one leads;
//! SIGKILL the leader and the other takes over within the lease duration; at no time do both
//! scale (the scale writes both report add up to the Deployment's spec changes). A clean
//! SIGTERM gives the lease up at once.

mod cluster_support;

use std::time::Duration;

use cluster_support::scaler::{ScalerProcess, generation, install_crd, policy, wait_replicas};
use cluster_support::{Cluster, Deadline, Exposition, deployment_yaml, replicas};
use tidescale::clock;

const LEASE: &[&str] = &[
    "--lease-duration",
    "6s",
    "--renew-deadline",
    "4s",
    "--retry-period",
    "1s",
];

/// The leader tests' policy: `web` on the Deployment `web`, up to 10 replicas.
fn web_policy(ns: &str, url: &str) -> String {
    policy(ns, "web", ("apps/v1", "Deployment", "web"), url, "")
        .replace("maxReplicas: 4", "maxReplicas: 10")
}

async fn start(cluster: &Cluster, ns: &str, who: &str) -> ScalerProcess {
    let mut args = vec!["--namespace", ns, "--lease-namespace", ns];
    args.extend_from_slice(LEASE);
    ScalerProcess::start(cluster, who, &args).await
}

/// Waits until exactly one of `procs` leads; returns its index.
async fn one_leader(procs: &[&ScalerProcess], seconds: u64) -> usize {
    let deadline = Deadline::new("exactly one leader", seconds);
    loop {
        let mut leading = vec![];
        for (i, p) in procs.iter().enumerate() {
            if p.leading().await {
                leading.push(i);
            }
        }
        assert!(leading.len() <= 1, "two leaders at once: {leading:?}");
        if leading.len() == 1 {
            return leading[0];
        }
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_scales_and_the_other_takes_over_after_a_kill() {
    let cluster = Cluster::require();
    install_crd(&cluster).await;
    let ns = cluster.namespace("ctl-lease").await;
    let page = Exposition::start(&cluster.host_ip).await;
    page.set("queue_depth", 20.0);
    cluster.apply(&deployment_yaml(&ns, "web", 1)).await;
    let g0 = generation(&cluster, &ns, "web").await;
    let a = start(&cluster, &ns, "a").await;
    let b = start(&cluster, &ns, "b").await;
    let first = one_leader(&[&a, &b], 30).await;
    cluster.apply(&web_policy(&ns, &page.url)).await;
    // The metric does not fall as replicas come: the count climbs to the maximum and stays.
    wait_replicas(&cluster, &ns, "web", 10).await;
    let (leader, follower) = if first == 0 { (a, b) } else { (b, a) };
    assert!(!follower.leading().await);
    let policy = format!("{ns}/web");
    let leader_writes = leader.writes(&policy).await;
    assert_eq!(
        follower.writes(&policy).await,
        0.0,
        "the follower never wrote"
    );

    // SIGKILL: the lease is not released; the follower waits out the lease duration.
    let killed_at = clock::now();
    leader.kill().await;
    one_leader(&[&follower], 20).await;
    let takeover = clock::since(killed_at);
    assert!(
        takeover <= Duration::from_secs(6 + 2 + 1),
        "took over after {takeover:?} (lease 6 s, retry 1 s)"
    );
    page.set("queue_depth", 5.0);
    wait_replicas(&cluster, &ns, "web", 1).await;
    let total = leader_writes + follower.writes(&policy).await;
    let changes = (generation(&cluster, &ns, "web").await - g0) as f64;
    assert_eq!(
        total, changes,
        "every write changed the spec once: no doubles"
    );

    // SIGTERM: the lease is given up, and a new candidate leads at once.
    assert!(follower.terminate().await, "a clean exit on SIGTERM");
    let c = start(&cluster, &ns, "c").await;
    let started = clock::now();
    one_leader(&[&c], 10).await;
    assert!(
        clock::since(started) < Duration::from_secs(4),
        "the released lease was free"
    );
    let lease = cluster
        .kubectl_json(&["-n", &ns, "get", "lease", "tidescale", "-o", "json"])
        .await;
    assert_eq!(lease["spec"]["holderIdentity"], "c");
    assert!(
        lease["spec"]["leaseTransitions"].as_i64().unwrap() >= 2,
        "{lease}"
    );
    cluster
        .kubectl_ok(&["delete", "namespace", &ns, "--wait=false"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_the_policies_and_each_leads_its_own_lease() {
    let cluster = Cluster::require();
    install_crd(&cluster).await;
    let ns = cluster.namespace("ctl-shards").await;
    let page = Exposition::start(&cluster.host_ip).await;
    page.set("queue_depth", 20.0);
    let names: Vec<String> = (0..6).map(|i| format!("web{i}")).collect();
    for n in &names {
        cluster.apply(&deployment_yaml(&ns, n, 1)).await;
        let p = web_policy(&ns, &page.url)
            .replace("name: web, namespace", &format!("name: {n}, namespace"))
            .replace(
                "kind: Deployment, name: web}",
                &format!("kind: Deployment, name: {n}}}"),
            )
            // 20 vs 10 on one replica → 2, held there by the maximum: one write each.
            .replace("maxReplicas: 10", "maxReplicas: 2");
        cluster.apply(&p).await;
    }
    let mut shards = vec![];
    for i in 0..2 {
        let index = i.to_string();
        let mut args = vec![
            "--namespace",
            &ns,
            "--lease-namespace",
            &ns,
            "--shards",
            "2",
            "--shard-index",
            &index,
        ];
        args.extend_from_slice(LEASE);
        shards.push(ScalerProcess::start(&cluster, &format!("s{i}"), &args).await);
    }
    for n in &names {
        let deadline = Deadline::new(&format!("{n} at 2"), 60);
        while replicas(&cluster, &ns, n).await.0 != 2 {
            deadline.tick().await;
        }
    }
    for (i, s) in shards.iter().enumerate() {
        assert!(s.leading().await, "shard {i} leads its own lease");
        let holder = cluster
            .kubectl_json(&[
                "-n",
                &ns,
                "get",
                "lease",
                &format!("tidescale-shard-{i}"),
                "-o",
                "json",
            ])
            .await;
        assert_eq!(holder["spec"]["holderIdentity"], format!("s{i}"));
    }
    let mut per_shard = [0.0, 0.0];
    for n in &names {
        let policy = format!("{ns}/{n}");
        let w = [
            shards[0].writes(&policy).await,
            shards[1].writes(&policy).await,
        ];
        assert!(
            w.contains(&0.0) && w.iter().sum::<f64>() == 1.0,
            "{n}: exactly one shard wrote once: {w:?}"
        );
        per_shard[usize::from(w[1] == 1.0)] += 1.0;
    }
    assert!(
        per_shard.iter().all(|c| *c >= 1.0),
        "both shards got policies: {per_shard:?}"
    );
    cluster
        .kubectl_ok(&["delete", "namespace", &ns, "--wait=false"])
        .await;
}
