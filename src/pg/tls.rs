//! TLS for PostgreSQL sessions with rustls, by libpq's `sslmode` rules:
//! `prefer` and `require` encrypt without checking the certificate (unless a root
//! is given), `verify-ca` checks the chain, `verify-full` the chain and the name.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::dsn::{Tls, TlsMode};
use crate::error::bad_input;

/// The connector for sessions with these settings.
pub fn connector(tls: &Tls) -> anyhow::Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("setting up TLS: {e}"))?;
    let verifier = match (tls.effective_mode(), &tls.root_cert) {
        (TlsMode::VerifyCa | TlsMode::VerifyFull, None) => {
            return Err(bad_input(format!(
                "sslmode={} checks the server's certificate: give the CA that signed it with \
                 sslrootcert=FILE (for RDS, its CA bundle)",
                if tls.mode == TlsMode::VerifyCa {
                    "verify-ca"
                } else {
                    "verify-full"
                }
            )));
        }
        (mode @ (TlsMode::VerifyCa | TlsMode::VerifyFull), Some(root)) => Checker {
            chain: Some(webpki(root, &provider)?),
            name: mode == TlsMode::VerifyFull,
            provider: provider.clone(),
        },
        _ => Checker {
            chain: None,
            name: false,
            provider: provider.clone(),
        },
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad_input(format!("cannot read sslcert {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| bad_input(format!("cannot read sslkey {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad_input(format!("the client certificate is not usable: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The standard verifier over the roots in `path`.
fn webpki(
    path: &std::path::Path,
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Arc<WebPkiServerVerifier>> {
    let read = |e: &dyn std::fmt::Display| {
        bad_input(format!("cannot read sslrootcert {}: {e}", path.display()))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| read(&e))? {
        roots
            .add(cert.map_err(|e| read(&e))?)
            .map_err(|e| read(&e))?;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| read(&e))
}

/// The server certificate check of one mode: the chain against the roots
/// (`None`: taken as it comes, libpq's `prefer`/`require`), and the name or not
/// (`verify-full` / `verify-ca`). The handshake's signatures are always checked.
#[derive(Debug)]
struct Checker {
    chain: Option<Arc<WebPkiServerVerifier>>,
    name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Checker {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
