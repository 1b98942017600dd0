//! The control plane's certificates and keys (ECDSA P-256, generated per control plane):
//! a cluster CA, kube-apiserver's serving certificate, an admin client certificate in
//! `system:masters`, and the ServiceAccount token signing key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::ClusterError;

/// Names and addresses kube-apiserver's serving certificate is valid for: loopback for the
/// tests and kubectl, the in-cluster names and the first Service IP for pods of a real node
/// (plus the bind address given to [`Pki::generate`]).
const SERVING_NAMES: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.0.0.1",
];

/// Group that RBAC's built-in `cluster-admin` binding grants everything.
const ADMIN_GROUP: &str = "system:masters";

/// PEM files of one control plane.
#[derive(Debug, Clone)]
pub struct Pki {
    /// Cluster CA certificate (trusted by clients; signs the serving and client certificates).
    pub ca_cert: PathBuf,
    /// kube-apiserver serving certificate and key.
    pub serving_cert: PathBuf,
    /// Key of [`Pki::serving_cert`].
    pub serving_key: PathBuf,
    /// Admin client certificate (`O=system:masters`) and key.
    pub admin_cert: PathBuf,
    /// Key of [`Pki::admin_cert`].
    pub admin_key: PathBuf,
    /// ServiceAccount token signing key (private, PKCS#8) and its public key.
    pub sa_key: PathBuf,
    /// Public half of [`Pki::sa_key`] (what kube-apiserver verifies tokens with).
    pub sa_pub: PathBuf,
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

fn write(path: &Path, pem: &str) -> Result<(), ClusterError> {
    std::fs::write(path, pem).map_err(|e| ClusterError::io(path, e))
}

impl Pki {
    /// Generates everything into `dir`; the serving certificate is also valid for `address`.
    pub fn generate(dir: &Path, address: IpAddr) -> Result<Pki, ClusterError> {
        let pki = Pki {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        };

        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name = dn("authstack-test-ca", None);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        write(&pki.ca_cert, &ca.self_signed(&ca_key)?.pem())?;
        let issuer = Issuer::new(ca, ca_key);

        let leaf = |names: &[&str],
                    cn: &str,
                    org: Option<&str>,
                    usage: ExtendedKeyUsagePurpose|
         -> Result<(String, String), ClusterError> {
            let key = KeyPair::generate()?;
            let mut params =
                CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
            params.distinguished_name = dn(cn, org);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![usage];
            Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
        };
        let address = address.to_string();
        let serving_names: Vec<&str> = SERVING_NAMES
            .iter()
            .copied()
            .chain(std::iter::once(address.as_str()))
            .collect();
        let (cert, key) = leaf(
            &serving_names,
            "kube-apiserver",
            None,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        write(&pki.serving_cert, &cert)?;
        write(&pki.serving_key, &key)?;
        let (cert, key) = leaf(
            &[],
            "authstack-admin",
            Some(ADMIN_GROUP),
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        write(&pki.admin_cert, &cert)?;
        write(&pki.admin_key, &key)?;

        let sa = KeyPair::generate()?;
        write(&pki.sa_key, &sa.serialize_pem())?;
        write(&pki.sa_pub, &sa.public_key_pem())?;
        Ok(pki)
    }
}
