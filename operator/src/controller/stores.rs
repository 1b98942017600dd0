//! Watches of every kind the builders emit, and the reflector stores they fill.
//!
//! Every owned kind is watched (label `app.kubernetes.io/managed-by=authstack-operator`), so a
//! change or deletion of any object the operator manages triggers a reconcile of its stack at
//! once. The same watch fills a store (typed objects without `managedFields`, to keep memory
//! small), and the reconcile reads live objects from it instead of one GET per object. An
//! object absent from the store is looked up once with a GET: it may be one the operator must
//! not touch (no label, so not watched) or one the watch has not delivered yet.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;
use kube::core::ApiResource;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::builders::meta::managed_by_selector;
use crate::crd::AuthStack;

/// What a kind needs to be watched, stored and read back as a dynamic object.
pub trait OwnedKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
}

impl OwnedKind for Secret {}
impl OwnedKind for ConfigMap {}
impl OwnedKind for ServiceAccount {}
impl OwnedKind for Service {}
impl OwnedKind for StatefulSet {}
impl OwnedKind for Deployment {}
impl OwnedKind for PodDisruptionBudget {}
impl OwnedKind for NetworkPolicy {}

/// Called once per owned kind by [`for_each_owned_kind`].
pub trait KindVisitor: Sized {
    /// Visits kind `K`.
    fn visit<K: OwnedKind>(self) -> Self;
}

/// Every kind the builders emit (desired and obsolete objects, the signing-key Secret):
/// the one list of watched kinds. `stores::tests` checks the builders against it.
pub fn for_each_owned_kind<V: KindVisitor>(v: V) -> V {
    v.visit::<Secret>()
        .visit::<ConfigMap>()
        .visit::<ServiceAccount>()
        .visit::<Service>()
        .visit::<StatefulSet>()
        .visit::<Deployment>()
        .visit::<PodDisruptionBudget>()
        .visit::<NetworkPolicy>()
}

/// The owned kinds as API resources.
pub fn owned_kinds() -> Vec<ApiResource> {
    struct Collect(Vec<ApiResource>);
    impl KindVisitor for Collect {
        fn visit<K: OwnedKind>(mut self) -> Self {
            self.0.push(ApiResource::erase::<K>(&()));
            self
        }
    }
    for_each_owned_kind(Collect(Vec::new())).0
}

/// A cache of one kind, read as dynamic objects.
trait KindStore: Send + Sync {
    fn cached(&self, namespace: &str, name: &str) -> Option<DynamicObject>;
}

impl<K: OwnedKind> KindStore for Store<K> {
    fn cached(&self, namespace: &str, name: &str) -> Option<DynamicObject> {
        let obj = self.get(&ObjectRef::new(name).within(namespace))?;
        serde_json::to_value(&*obj)
            .and_then(serde_json::from_value)
            .ok()
    }
}

/// The reflector stores of the owned kinds.
#[derive(Clone, Default)]
pub struct Stores {
    by_kind: HashMap<ApiResource, Arc<dyn KindStore>>,
}

impl Stores {
    /// The cached object, if its store has it.
    pub fn cached(&self, kind: &ApiResource, namespace: &str, name: &str) -> Option<DynamicObject> {
        self.by_kind.get(kind)?.cached(namespace, name)
    }

    /// The live object: from the store, else with one GET (see the module documentation).
    pub async fn live(
        &self,
        client: &Client,
        kind: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, kube::Error> {
        if let Some(obj) = self.cached(kind, namespace, name) {
            return Ok(Some(obj));
        }
        Api::<DynamicObject>::namespaced_with(client.clone(), namespace, kind)
            .get_opt(name)
            .await
    }
}

/// Registers a watch of every owned kind with `controller` (each change triggers its owner's
/// reconcile) and returns the stores the watches fill.
pub fn watch_owned(
    controller: Controller<AuthStack>,
    client: &Client,
    namespace: Option<&str>,
) -> (Controller<AuthStack>, Stores) {
    struct Register<'a> {
        controller: Controller<AuthStack>,
        stores: Stores,
        client: &'a Client,
        namespace: Option<&'a str>,
    }
    impl KindVisitor for Register<'_> {
        fn visit<K: OwnedKind>(mut self) -> Self {
            let api: Api<K> = match self.namespace {
                Some(ns) => Api::namespaced(self.client.clone(), ns),
                None => Api::all(self.client.clone()),
            };
            let (reader, writer) = reflector::store::<K>();
            let config = watcher::Config::default().labels(&managed_by_selector());
            let stream = watcher(api, config)
                .default_backoff()
                // Field ownership is the API server's business: not worth its memory here.
                .modify(|obj| obj.managed_fields_mut().clear())
                .reflect(writer)
                .touched_objects();
            self.stores
                .by_kind
                .insert(ApiResource::erase::<K>(&()), Arc::new(reader));
            self.controller = self.controller.owns_stream(stream);
            self
        }
    }
    let r = for_each_owned_kind(Register {
        controller,
        stores: Stores::default(),
        client,
        namespace,
    });
    (r.controller, r.stores)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use authstack_keyring::KeyRing;
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::builders::stack::{desired, obsolete};
    use crate::builders::test_support::{Generated, settings, settings_with};
    use crate::crd::{ExternalSpec, PostgresSpec, RabbitmqSpec, SecretKeyRef};

    /// Every kind the builders emit, for a stack with everything managed and one with
    /// everything external and single replicas (which makes objects obsolete), is watched.
    #[test]
    fn every_emitted_kind_is_watched() {
        let watched: HashSet<ApiResource> = owned_kinds().into_iter().collect();
        let generated = Generated::new(KeyRing::empty(Default::default()));
        let managed = settings();
        let external_ref = ExternalSpec {
            secret_ref: SecretKeyRef {
                name: "url".into(),
                key: "url".into(),
            },
        };
        let external = settings_with(|st| {
            st.spec.postgres = PostgresSpec {
                managed: None,
                external: Some(external_ref.clone()),
            };
            st.spec.rabbitmq = RabbitmqSpec {
                managed: None,
                external: Some(external_ref.clone()),
            };
            st.spec.gateway.replicas = 1;
            st.spec.auth_service.replicas = 1;
        });
        let mut emitted: Vec<ApiResource> = desired(&managed, &generated.inputs())
            .unwrap()
            .into_iter()
            .map(|d| d.resource)
            .collect();
        emitted.extend(obsolete(&external).into_iter().map(|o| o.resource));
        emitted.push(ApiResource::erase::<Secret>(&()));
        for kind in emitted {
            assert!(
                watched.contains(&kind),
                "{} is emitted but not watched",
                kind.kind
            );
        }
        assert_eq!(watched.len(), owned_kinds().len(), "listed twice");
    }

    #[test]
    fn stores_answer_dynamic_objects() {
        let (reader, mut writer) = reflector::store::<ConfigMap>();
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("demo-jwks".into());
        cm.metadata.namespace = Some("ns".into());
        cm.data = Some([("jwks.json".to_owned(), "{}".to_owned())].into());
        writer.apply_watcher_event(&Event::Apply(cm));
        let kind = ApiResource::erase::<ConfigMap>(&());
        let mut stores = Stores::default();
        stores.by_kind.insert(kind.clone(), Arc::new(reader));
        let live = stores.cached(&kind, "ns", "demo-jwks").unwrap();
        assert_eq!(live.types.unwrap().kind, "ConfigMap");
        assert_eq!(live.data["data"]["jwks.json"], "{}");
        assert!(stores.cached(&kind, "other", "demo-jwks").is_none());
        assert!(
            stores
                .cached(&ApiResource::erase::<Secret>(&()), "ns", "demo-jwks")
                .is_none()
        );
    }
}
