//! Installing the operator as a cluster admin would, on the real control plane: without its
//! CRD (a clear failure), with `installCRD` (the operator applies its own), and the whole
//! Helm life cycle — `helm install` over the previous release's CRD, every sample applied and
//! Ready, `kubectl authstack status|rotate|revoke`, the CRD upgrade and `helm upgrade` with the
//! old objects still served, `helm uninstall` leaving only what the docs say stays.
//!
//! These tests change the cluster-wide CRD, so they run one at a time.

mod common;

use std::path::{Path, PathBuf};

use authstack_testkit::k8s::{self, ControlPlane, tools};
use common::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::{Value, json};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CRD_NAME: &str = "authstacks.authstack.io";

async fn crds(cp: &ControlPlane) -> Api<CustomResourceDefinition> {
    Api::all(cp.client().await.unwrap())
}

/// Deletes the AuthStack CRD (and with it every AuthStack) and waits until it is gone.
async fn remove_crd(cp: &ControlPlane) {
    let crds = crds(cp).await;
    match crds.delete(CRD_NAME, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("deleting the CRD: {e}"),
    }
    eventually("the CRD to be gone", SLOW, || async {
        crds.get_opt(CRD_NAME).await.ok()?.is_none().then_some(())
    })
    .await;
}

async fn wait_established(cp: &ControlPlane) {
    let established = kube::runtime::wait::await_condition(
        crds(cp).await,
        CRD_NAME,
        kube::runtime::conditions::is_crd_established(),
    );
    tokio::time::timeout(SLOW, established)
        .await
        .expect("the CRD to be established")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_crd_the_operator_fails_clearly_and_installs_it_when_told() {
    let _serial = SERIAL.lock().await;
    let cp = ControlPlane::shared().await;
    remove_crd(cp).await;

    let h = Harness::with("no-crd", false, &[]).await;
    let mut op = h.operator("op-0");
    let status = tokio::time::timeout(SLOW, op.child.wait())
        .await
        .expect("the operator exits")
        .unwrap();
    assert!(!status.success());
    let logs = op.logs();
    assert!(logs.contains("CRD is not installed"), "{logs}");

    // installCRD: the chart grants the CRD permissions, the operator applies its own CRD.
    let h = Harness::with("install-crd", false, &["installCRD=true"]).await;
    let op = h.operator("op-0");
    op.wait_role("leader").await;
    let crd = crds(cp).await.get(CRD_NAME).await.unwrap();
    let managers: Vec<String> = crd
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "authstack-operator"),
        "{managers:?}"
    );
    assert!(
        serde_json::to_string(&crd.spec)
            .unwrap()
            .contains("must be longer than accessTokenTtl"),
        "the operator's own CRD, with its CEL rules"
    );
    h.apply_stack("demo", json!({})).await;
    h.converged("demo").await;
    assert!(op.stop().await.success());
}

/// kubectl/helm output, asserted successful.
fn ok(what: &str, out: tools::Output) -> String {
    assert!(out.success, "{what}: {}\n{}", out.stdout, out.stderr);
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_samples_upgrade_and_uninstall() {
    let _serial = SERIAL.lock().await;
    let cp = ControlPlane::shared().await;
    let root = k8s::binaries::repo_root();
    let admin = cp.client().await.unwrap();
    remove_crd(cp).await;
    let system = cp.namespace("authstack-system").await.unwrap();
    let auth = cp.namespace("auth").await.unwrap();
    let (system_ns, auth_ns) = (system.name().to_owned(), auth.name().to_owned());
    let dir = std::env::temp_dir().join(format!("authstack-helm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |program: &Path, args: &[&str]| {
        let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-authstack")).parent();
        tools::run(program, args, cp.kubeconfig(), &dir, plugin_dir, None).unwrap()
    };
    let (helm, kubectl) = (tools::helm().unwrap(), tools::kubectl().unwrap());
    let kubectl_ok = |args: &[&str]| ok(&format!("kubectl {args:?}"), run(&kubectl, args));

    // A cluster that ran the previous release has its CRD; the production sample names a
    // StorageClass `standard-rwo`, served here by the same host-path provisioner.
    let previous = root.join("operator/tests/testdata/authstack-crd-previous.yaml");
    kubectl_ok(&["apply", "--server-side", "-f", &previous.to_string_lossy()]);
    wait_established(cp).await;
    k8s::apply_yaml(
        &admin,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: standard-rwo}\nprovisioner: kubernetes.io/host-path\nreclaimPolicy: Delete\n",
        "e2e",
    )
    .await
    .unwrap();

    // helm install, waiting for the operator's Deployment to roll out (kwok runs its pods).
    let chart = root.join("charts/authstack-operator");
    let chart = chart.to_string_lossy().into_owned();
    let watch = format!("watchNamespaces={{{auth_ns}}}");
    let install = ok(
        "helm install",
        run(
            &helm,
            &[
                "install",
                "authstack-operator",
                &chart,
                "--namespace",
                &system_ns,
                "--set",
                &watch,
                "--set",
                "leaderElection.retryInterval=200ms",
                "--wait",
                "--timeout",
                "3m",
            ],
        ),
    );
    assert!(
        install.contains(&format!(
            "It reconciles AuthStacks in namespace(s) {auth_ns} only"
        )),
        "{install}"
    );
    let manifest = ok(
        "helm get manifest",
        run(
            &helm,
            &["get", "manifest", "authstack-operator", "-n", &system_ns],
        ),
    );
    let h = Harness::for_release(system, Release::parse("authstack-operator", manifest)).await;
    // The operator binary with the chart's flags and its ServiceAccount's token (the pods kwok
    // "runs" execute nothing).
    let op = h.operator("op-0");
    op.wait_role("leader").await;

    // Every sample, applied with kubectl and Ready through the real controllers.
    let mut stacks = Vec::new();
    for entry in std::fs::read_dir(root.join("manifests/samples")).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        kubectl_ok(&["apply", "-n", &auth_ns, "-f", &path.to_string_lossy()]);
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            if v["kind"] == "AuthStack" {
                stacks.push(v["metadata"]["name"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(stacks.len(), 3, "{stacks:?}");
    let all_ready = || {
        let mut args = vec![
            "wait",
            "--for=condition=Ready",
            "-n",
            &auth_ns,
            "--timeout=180s",
        ];
        let names: Vec<String> = stacks.iter().map(|n| format!("authstack/{n}")).collect();
        args.extend(names.iter().map(String::as_str));
        kubectl_ok(&args)
    };
    all_ready();

    // kubectl authstack status | rotate | revoke, through kubectl's plugin mechanism.
    let status = kubectl_ok(&["authstack", "-n", &auth_ns, "status", "demo"]);
    assert!(
        status.contains("Ready") && status.contains("Active:"),
        "{status}"
    );
    let active = status
        .lines()
        .find_map(|l| l.trim().strip_prefix("Active:"))
        .map(|k| k.trim().to_owned())
        .unwrap();
    let rotated = kubectl_ok(&["authstack", "-n", &auth_ns, "rotate", "demo"]);
    assert!(rotated.contains("rotationCounter is now 1"), "{rotated}");
    eventually("a pending key", SLOW, || async {
        let out = run(&kubectl, &["authstack", "-n", &auth_ns, "status", "demo"]);
        out.stdout.contains("Pending:").then_some(())
    })
    .await;
    let revoked = kubectl_ok(&["authstack", "-n", &auth_ns, "revoke", "demo", &active]);
    assert!(revoked.contains("revoked the signing key"), "{revoked}");
    eventually("the revoked key to be gone", SLOW, || async {
        let out = run(&kubectl, &["authstack", "-n", &auth_ns, "status", "demo"]);
        (!out.stdout.contains(&active) || out.stdout.contains("WARNING")).then_some(())
    })
    .await;

    // Upgrade: the new CRD first (Helm never upgrades crds/), then the chart.
    let crd = root.join("crds/authstack.yaml");
    kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &crd.to_string_lossy(),
    ]);
    wait_established(cp).await;
    ok(
        "helm upgrade",
        run(
            &helm,
            &[
                "upgrade",
                "authstack-operator",
                &chart,
                "--namespace",
                &system_ns,
                "--reuse-values",
                "--set",
                "logLevel=debug",
                "--wait",
                "--timeout",
                "3m",
            ],
        ),
    );
    // The objects stored under the previous CRD are still served, and still Ready.
    let listed: Value = serde_json::from_str(&kubectl_ok(&[
        "get",
        "authstacks",
        "-n",
        &auth_ns,
        "-o",
        "json",
    ]))
    .unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for s in items {
        assert_eq!(condition_status(s, "Ready").as_deref(), Some("True"), "{s}");
    }
    // The new CRD's rules are in force for new objects.
    let bad = json!({
        "apiVersion": "authstack.io/v1alpha1", "kind": "AuthStack",
        "metadata": {"name": "bad", "namespace": auth_ns},
        "spec": {"authService": {"tokens": {"accessTokenTtl": "1h", "refreshTokenTtl": "30m"}}},
    });
    let out = tools::run(
        &kubectl,
        &["create", "--dry-run=server", "-f", "-"],
        cp.kubeconfig(),
        &dir,
        None,
        Some(&serde_json::to_string(&bad).unwrap()),
    )
    .unwrap();
    assert!(
        !out.success && out.stderr.contains("must be longer than accessTokenTtl"),
        "{}",
        out.stderr
    );
    // The upgraded release's operator takes over and keeps the stacks Ready.
    assert!(op.stop().await.success());
    let manifest = ok(
        "helm get manifest",
        run(
            &helm,
            &["get", "manifest", "authstack-operator", "-n", &system_ns],
        ),
    );
    let upgraded = Release::parse("authstack-operator", manifest);
    assert_eq!(
        upgraded
            .env
            .iter()
            .find(|(k, _)| k == "RUST_LOG")
            .map(|(_, v)| v.as_str()),
        Some("debug")
    );
    let op = h.operator("op-1");
    op.wait_role("leader").await;
    all_ready();
    assert!(op.stop().await.success());

    // Uninstall: every object of the release goes; the CRD, the AuthStacks with what they own,
    // and the leader-election Lease (written by the operator, not by Helm) stay.
    ok(
        "helm uninstall",
        run(
            &helm,
            &[
                "uninstall",
                "authstack-operator",
                "-n",
                &system_ns,
                "--wait",
            ],
        ),
    );
    let selector = "app.kubernetes.io/instance=authstack-operator";
    let namespaced = "deployments,serviceaccounts,services,poddisruptionbudgets,roles,rolebindings,secrets,configmaps";
    for (kinds, ns, labels) in [
        (namespaced, Some(&system_ns), selector),
        (namespaced, Some(&auth_ns), selector),
        ("clusterroles,clusterrolebindings", None, selector),
        ("secrets", Some(&system_ns), "owner=helm"),
    ] {
        let mut args = vec!["get", kinds, "-l", labels, "-o", "name"];
        if let Some(ns) = ns {
            args.extend(["-n", ns.as_str()]);
        }
        let left = kubectl_ok(&args);
        assert!(left.trim().is_empty(), "left behind: {left}");
    }
    assert!(crds(cp).await.get_opt(CRD_NAME).await.unwrap().is_some());
    let still: Value = serde_json::from_str(&kubectl_ok(&[
        "get",
        "authstacks,deployments,statefulsets",
        "-n",
        &auth_ns,
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(still["items"].as_array().unwrap().len(), 3 + 6 + 4);
    assert!(
        h.get("coordination.k8s.io/v1", "Lease", "authstack-operator")
            .await
            .is_some()
    );

    let _ = k8s::delete_yaml(
        &admin,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: standard-rwo}\n",
    )
    .await;
    drop(auth);
    let _ = std::fs::remove_dir_all(&dir);
}
