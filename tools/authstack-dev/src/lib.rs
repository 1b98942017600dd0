//! Developer tooling library behind the `authstack-dev` command.
//!
//! [`kubelet::sync_secret`] stands in for kubelet where no cluster exists: it follows a Secret
//! through the Kubernetes API and writes its data into a directory exactly as kubelet updates a
//! mounted Secret volume (timestamped directory, atomic `..data` swap), after a configurable
//! delay — kubelet can take a minute or more to propagate a Secret change to a pod.

pub mod kubelet;
