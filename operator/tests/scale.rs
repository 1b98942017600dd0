//! Scale: 100 default AuthStacks (600 pods, 200 volume claims) on the real control plane, with
//! the operator as the chart's ServiceAccount: every stack converges and becomes Ready through
//! the real controllers (kwok runs the pods). The times are printed (`MEASURE`), not asserted:
//! they depend on the machine; the operator's memory is bounded.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const STACKS: usize = 100;
/// 600 pods through the Deployment, StatefulSet and volume controllers on a shared 2-core
/// machine take minutes.
const SCALE_TIMEOUT: Duration = Duration::from_secs(900);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_stacks_converge_and_become_ready() {
    let h = Harness::new("hundred").await;
    let op = h.operator("op-0");
    op.wait_role("leader").await;
    let names: Vec<String> = (0..STACKS).map(|i| format!("s{i:03}")).collect();
    let start = Instant::now();
    for name in &names {
        h.apply_stack(name, json!({})).await;
    }
    let applied = start.elapsed();
    let count = |condition: &'static str| {
        let h = &h;
        async move {
            h.stacks()
                .list(&Default::default())
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .filter(|s| {
                            let v = serde_json::to_value(s).unwrap_or_default();
                            match condition {
                                "keyed" => v["status"]["keys"]["activeKid"].is_string(),
                                _ => condition_status(&v, condition).as_deref() == Some("True"),
                            }
                        })
                        .count()
                })
                .unwrap_or(0)
        }
    };
    eventually("100 stacks to converge", SCALE_TIMEOUT, || async {
        (count("keyed").await == STACKS).then_some(())
    })
    .await;
    let converged = start.elapsed();
    let rss_converged = op.rss_kib();
    eventually("100 stacks to be Ready", SCALE_TIMEOUT, || async {
        (count("Ready").await == STACKS).then_some(())
    })
    .await;
    let ready = start.elapsed();
    let rss = op.rss_kib();
    let pods = h.list("v1", "Pod").await.len();
    let reconciles = op.metric(RECONCILIATIONS).await;
    eprintln!(
        "MEASURE hundred_stacks_applied_ms={} hundred_stacks_converged_ms={} hundred_stacks_ready_ms={} pods={pods} operator_rss_kib_converged={rss_converged} operator_rss_kib_ready={rss} reconciles={reconciles}",
        applied.as_millis(),
        converged.as_millis(),
        ready.as_millis(),
    );
    assert_eq!(pods, STACKS * 6);
    assert!(rss < 64 * 1024, "RSS {rss} KiB");
    assert!(op.stop().await.success());
}
