//! Certificates for TLS tests, made fresh for each test: a CA, a server
//! certificate it signs for the sandbox's names, and files in a temp dir.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use wraith::sandbox::ServerTls;

/// A CA and a server certificate for `names` (DNS names or IP addresses).
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub server: ServerTls,
    ca: CertificateParams,
    ca_key: KeyPair,
}

impl Certs {
    pub fn new(names: &[&str]) -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "wraith test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let cert = params
            .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
            .unwrap();
        let write = |name: &str, text: String| -> PathBuf {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let server = ServerTls {
            ca: write("ca.pem", ca_cert.pem()),
            cert: write("server.pem", cert.pem()),
            key: write("server.key", key.serialize_pem()),
        };
        Certs {
            dir,
            server,
            ca,
            ca_key,
        }
    }

    /// A client certificate for user `cn`, signed by the CA: (cert, key) files.
    pub fn client(&self, cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.ca, &self.ca_key))
            .unwrap();
        let write = |name: &str, text: String| {
            let p = self.dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        (
            write(&format!("{cn}.pem"), cert.pem()),
            write(&format!("{cn}.key"), key.serialize_pem()),
        )
    }

    pub fn ca(&self) -> String {
        self.server.ca.display().to_string()
    }
}
