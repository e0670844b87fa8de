//! `[kubernetes]`: who owns the jobs of a Kubernetes namespace. A job posted to
//! `POST /api/v1/jobs` with `"namespace": "…"` and no `owner` gets the owner of the first
//! rule whose glob matches the namespace (`*` any run of characters, `?` one, as in token
//! scopes), and the namespace as its project when it has none; so tenant scopes, statements
//! and the reports see Kubernetes workloads under their customer.

use serde::Deserialize;

use super::ConfigError;
use kilowatch_store::jobs::JobPost;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Rules in order, first match wins: `{ namespace = "mistral-*", owner = "mistral-ai" }`.
    #[serde(default)]
    pub namespace_owners: Vec<NamespaceOwner>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceOwner {
    /// A namespace or a glob over namespaces.
    pub namespace: String,
    /// The owner (Slurm-account-like name, e.g. "mistral-ai" or "mistral-ai/inference").
    pub owner: String,
}

impl KubernetesConfig {
    /// The owner of `namespace`'s jobs, if a rule names it.
    pub fn owner_of(&self, namespace: &str) -> Option<&str> {
        self.namespace_owners.iter().find(|r| crate::tenant::glob(&r.namespace, namespace)).map(|r| r.owner.as_str())
    }

    /// Fills a posted job's owner (when absent or empty) and project (when absent) from its
    /// namespace.
    pub fn apply(&self, namespace: &str, post: &mut JobPost) {
        if post.owner.as_deref().is_none_or(str::is_empty)
            && let Some(o) = self.owner_of(namespace)
        {
            post.owner = Some(o.to_owned());
        }
        if post.project.is_none() {
            post.project = Some(namespace.to_owned());
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, r) in self.namespace_owners.iter().enumerate() {
            if r.namespace.trim().is_empty() || r.owner.trim().is_empty() || r.owner.chars().any(char::is_control) {
                return Err(ConfigError::Invalid { key: "kubernetes.namespace_owners", message: format!("entry {}: namespace and owner must both be non-empty names", i + 1) });
            }
        }
        Ok(())
    }
}

/// The jobs of a `POST /api/v1/jobs` body (one object or an array), each object's
/// `namespace` taken out and applied through `k8s`. Err: why the body is not a job post.
pub fn job_posts(body: serde_json::Value, k8s: &KubernetesConfig) -> Result<Vec<JobPost>, String> {
    let items = match body {
        serde_json::Value::Array(a) => a,
        other => vec![other],
    };
    items
        .into_iter()
        .map(|mut v| {
            let ns = match v.as_object_mut().and_then(|o| o.remove("namespace")) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s),
                Some(other) => return Err(format!("namespace: expected a string, got {other}")),
            };
            let mut post: JobPost = serde_json::from_value(v).map_err(|e| e.to_string())?;
            if let Some(ns) = ns {
                k8s.apply(&ns, &mut post);
            }
            Ok(post)
        })
        .collect()
}
