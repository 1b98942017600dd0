//! Test support for AuthStack (never shipped in a binary):
//!
//! - [`k8s`]: a real Kubernetes control plane on loopback (etcd, kube-apiserver,
//!   kube-controller-manager, kube-scheduler, kwok) built from the Kubernetes sources, one per
//!   test binary, a fresh namespace per test; `authstack-cluster` runs the same one by hand
//!   (`make cluster-up`);
//! - [`postgres`]: a throw-away PostgreSQL database per test;
//! - [`tcp_proxy`]: a loopback proxy whose connections a test can cut (reset) or partition
//!   (silence), to simulate a broker that drops connections or goes away;
//! - [`private`]: PostgreSQL and RabbitMQ servers of a test's own, which it may stop, restart
//!   or kill;
//! - [`cleanup`]: clean-up that also runs when a test panics;
//! - [`broker`]: the local broker's administrator and the least-privilege user of each
//!   component;
//! - [`http`]: the tests' HTTP client, whatever TLS features the build unified;
//! - [`logs`]: the in-process services' logs and the secrets a test used, for the log scan.

pub mod broker;
pub mod cleanup;
pub mod http;
pub mod k8s;
pub mod logs;
pub mod postgres;
pub mod private;
pub mod tcp_proxy;
