//! kube-apiserver's audit log, restricted to what ServiceAccounts do (the operator under test
//! runs as one; the admin, the controllers and kwok use certificates and are not logged), so a
//! test can ask the real server which requests a client made.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ClusterError, Result};

/// File name of the audit policy in the state directory.
const POLICY_FILE: &str = "audit-policy.yaml";
/// File name of the audit log in the state directory.
const LOG_FILE: &str = "audit.log";
/// Largest audit log before kube-apiserver rotates it (MB); one old file is kept.
const LOG_MAX_MB: u32 = 200;

/// Metadata (who, what, which object) of every request by a ServiceAccount, once it completed;
/// nothing else.
const POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: [\"system:serviceaccounts\"]
  - level: None
";

/// Writes the policy into `dir`; returns kube-apiserver's audit flags.
pub(crate) fn apiserver_flags(dir: &Path) -> Result<Vec<String>> {
    let policy = dir.join(POLICY_FILE);
    std::fs::write(&policy, POLICY).map_err(|e| ClusterError::io(&policy, e))?;
    Ok(vec![
        format!("--audit-policy-file={}", policy.display()),
        format!("--audit-log-path={}", log_path(dir).display()),
        "--audit-log-format=json".into(),
        format!("--audit-log-maxsize={LOG_MAX_MB}"),
        "--audit-log-maxbackup=1".into(),
    ])
}

/// The audit log of the control plane whose state is in `dir`.
pub(crate) fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

/// One audited request.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// `ResponseComplete`, `ResponseStarted` (long-running requests), `Panic`.
    pub stage: String,
    /// Kubernetes verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, …
    pub verb: String,
    /// The request's path and query.
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    /// Who made it.
    pub user: AuditUser,
    /// The object or collection it addressed (absent for non-resource paths).
    #[serde(default)]
    pub object_ref: Option<AuditObjectRef>,
}

/// The authenticated user of an audited request.
#[derive(Clone, Debug, Deserialize)]
pub struct AuditUser {
    /// `system:serviceaccount:<namespace>:<name>` for a ServiceAccount.
    pub username: String,
}

/// The object an audited request addressed.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditObjectRef {
    /// Resource (plural), e.g. `secrets`.
    #[serde(default)]
    pub resource: String,
    /// Subresource, e.g. `status`.
    #[serde(default)]
    pub subresource: String,
    /// API group (empty for the core group).
    #[serde(default)]
    pub api_group: String,
    /// Namespace (empty for cluster-scoped objects).
    #[serde(default)]
    pub namespace: String,
    /// Name (empty for collections).
    #[serde(default)]
    pub name: String,
}

/// A position in the audit log: [`events_since`] returns what was logged after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditMark(u64);

/// The current end of the log at `path`.
pub(crate) fn mark(path: &Path) -> AuditMark {
    AuditMark(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
}

/// Every event logged at `path` after `since` (from the start if the log was rotated since).
pub(crate) fn events_since(path: &Path, since: AuditMark) -> Result<Vec<AuditEvent>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ClusterError::io(path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| ClusterError::io(path, e))?
        .len();
    let start = if since.0 <= len { since.0 } else { 0 };
    file.seek(SeekFrom::Start(start))
        .map_err(|e| ClusterError::io(path, e))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| ClusterError::io(path, e))?;
    // The last line may still be being written: only whole lines count.
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_after_a_mark_are_read_and_partial_lines_skipped() {
        let dir = std::env::temp_dir().join(format!("authstack-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = log_path(&dir);
        let line = |verb: &str| {
            format!(
                r#"{{"stage":"ResponseComplete","verb":"{verb}","requestURI":"/api/v1/namespaces/a/secrets/s","user":{{"username":"system:serviceaccount:a:op"}},"objectRef":{{"resource":"secrets","namespace":"a","name":"s","apiVersion":"v1"}}}}"#
            )
        };
        std::fs::write(&path, format!("{}\n", line("get"))).unwrap();
        let m = mark(&path);
        std::fs::write(
            &path,
            format!("{}\n{}\n{{\"stage\":", line("get"), line("patch")),
        )
        .unwrap();
        let events = events_since(&path, m).unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].verb, "patch");
        let object = events[0].object_ref.clone().unwrap();
        assert_eq!(
            (object.resource.as_str(), object.name.as_str()),
            ("secrets", "s")
        );
        assert_eq!(events[0].user.username, "system:serviceaccount:a:op");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
