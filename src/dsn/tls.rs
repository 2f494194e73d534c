//! TLS settings as DBAs spell them: libpq's `sslmode`, `sslrootcert`, `sslcert`,
//! `sslkey` and the mysql client's `ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key`,
//! read from a connection string (which the drivers would refuse or misread)
//! and taken out of it before the driver parses the rest.

use std::path::PathBuf;

use crate::error::bad_input;

/// How a session uses TLS, from weakest to strictest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain text only.
    Disable,
    /// TLS when the server offers it, plain text otherwise; the certificate is not checked.
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is checked only against a given root.
    Require,
    /// TLS with a certificate signed by the trusted root, whatever its name.
    VerifyCa,
    /// TLS with a trusted certificate that names the host.
    VerifyFull,
}

/// The TLS settings of one connection string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tls {
    pub mode: TlsMode,
    /// Trusted root certificates (PEM); `None`: no root given.
    pub root_cert: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that ask for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Tls {
    /// `require` with a root given checks the chain, as libpq does (and MySQL's
    /// client does with `--ssl-ca`).
    pub fn effective_mode(&self) -> TlsMode {
        match (self.mode, &self.root_cert) {
            (TlsMode::Require, Some(_)) => TlsMode::VerifyCa,
            (mode, _) => mode,
        }
    }

    /// The certificate is checked at all.
    pub fn verifies(&self) -> bool {
        matches!(
            self.effective_mode(),
            TlsMode::VerifyCa | TlsMode::VerifyFull
        )
    }

    /// Sets `key` (an already recognised TLS key of `engine`'s spelling) to `value`.
    fn set(&mut self, key: &str, value: &str, mysql: bool) -> anyhow::Result<()> {
        let path = || Some(PathBuf::from(value));
        match key {
            "sslmode" => self.mode = pg_mode(value)?,
            "ssl-mode" if mysql => self.mode = mysql_mode(value)?,
            "sslrootcert" | "ssl-ca" => self.root_cert = path(),
            "sslcert" | "ssl-cert" => self.cert = path(),
            "sslkey" | "ssl-key" => self.key = path(),
            _ => {}
        }
        Ok(())
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.cert.is_some() != self.key.is_some() {
            return Err(bad_input(
                "a client certificate needs both its files: sslcert and sslkey (ssl-cert and \
                 ssl-key on MySQL)",
            ));
        }
        if self.mode == TlsMode::Disable && (self.root_cert.is_some() || self.cert.is_some()) {
            return Err(bad_input(
                "certificates are given but TLS is disabled: drop sslmode=disable \
                 (ssl-mode=DISABLED), or the certificate options",
            ));
        }
        Ok(())
    }
}

fn pg_mode(v: &str) -> anyhow::Result<TlsMode> {
    Ok(match v {
        "disable" => TlsMode::Disable,
        "prefer" => TlsMode::Prefer,
        "require" => TlsMode::Require,
        "verify-ca" => TlsMode::VerifyCa,
        "verify-full" => TlsMode::VerifyFull,
        _ => {
            return Err(bad_input(format!(
                "sslmode={v} is not supported: use disable, prefer, require, verify-ca or verify-full"
            )));
        }
    })
}

fn mysql_mode(v: &str) -> anyhow::Result<TlsMode> {
    Ok(match v.to_ascii_uppercase().as_str() {
        "DISABLED" => TlsMode::Disable,
        "PREFERRED" => TlsMode::Prefer,
        "REQUIRED" => TlsMode::Require,
        "VERIFY_CA" => TlsMode::VerifyCa,
        "VERIFY_IDENTITY" => TlsMode::VerifyFull,
        _ => {
            return Err(bad_input(format!(
                "ssl-mode={v} is not supported: use DISABLED, PREFERRED, REQUIRED, VERIFY_CA or \
                 VERIFY_IDENTITY"
            )));
        }
    })
}

/// The TLS key a parameter name stands for on this engine (`ssl_mode` is the
/// option-file spelling of `ssl-mode`).
fn tls_key(name: &str, mysql: bool) -> Option<&'static str> {
    let k = name.replace('_', "-");
    let known: &[&'static str] = if mysql {
        &["ssl-mode", "ssl-ca", "ssl-cert", "ssl-key"]
    } else {
        &["sslmode", "sslrootcert", "sslcert", "sslkey"]
    };
    known.iter().copied().find(|known| *known == k)
}

/// The name is one of this engine's TLS parameters.
pub fn is_key(name: &str, mysql: bool) -> bool {
    tls_key(name, mysql).is_some()
}

/// MySQL's driver has TLS parameters of its own; wraith takes the mysql client's.
const DRIVER_TLS: [(&str, &str); 4] = [
    ("require_ssl", "ssl-mode=REQUIRED"),
    ("verify_ca", "ssl-mode=VERIFY_CA"),
    ("verify_identity", "ssl-mode=VERIFY_IDENTITY"),
    ("built_in_roots", "ssl-ca=FILE"),
];

/// Takes the TLS parameters out of `pairs` (name, value) into a [`Tls`]; what
/// remains is for the driver.
pub fn take(
    pairs: Vec<(String, String)>,
    mysql: bool,
) -> anyhow::Result<(Tls, Vec<(String, String)>)> {
    let mut tls = Tls::default();
    let mut rest = Vec::new();
    for (name, value) in pairs {
        if mysql && let Some((_, spelling)) = DRIVER_TLS.iter().find(|(n, _)| *n == name) {
            return Err(bad_input(format!(
                "{name} is not a wraith option: say {spelling} (the mysql client's names: ssl-mode, \
                 ssl-ca, ssl-cert, ssl-key)"
            )));
        }
        match tls_key(&name, mysql) {
            Some(key) => tls.set(key, &value, mysql)?,
            None => rest.push((name, value)),
        }
    }
    tls.check()?;
    Ok((tls, rest))
}

/// Fills what `tls` lacks from `other` (the environment, an option file).
pub fn fill(tls: &mut Tls, other: Vec<(String, String)>, mysql: bool) -> anyhow::Result<()> {
    let (from, _) = take(other, mysql)?;
    let given = |t: &Tls| t.mode != TlsMode::default();
    if !given(tls) && given(&from) {
        tls.mode = from.mode;
    }
    tls.root_cert = tls.root_cert.take().or(from.root_cert);
    if tls.cert.is_none() {
        tls.cert = from.cert;
        tls.key = from.key;
    }
    tls.check()
}

/// MySQL's TLS settings in the driver's terms: the mode's checks, the trusted
/// root, a client certificate.
pub fn mysql_ssl(tls: &Tls) -> Option<mysql_async::SslOpts> {
    use mysql_async::{ClientIdentity, SslOpts};
    let path = |p: &std::path::PathBuf| p.clone().into();
    let mode = tls.effective_mode();
    if mode == TlsMode::Disable {
        return None;
    }
    let mut o = SslOpts::default();
    if let Some(ca) = &tls.root_cert {
        o = o
            .with_root_certs(vec![path(ca)])
            .with_disable_built_in_roots(true);
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        o = o.with_client_identity(Some(ClientIdentity::new(path(cert), path(key))));
    }
    Some(match mode {
        TlsMode::VerifyFull => o,
        TlsMode::VerifyCa => o.with_danger_skip_domain_validation(true),
        _ => o.with_danger_accept_invalid_certs(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn both_spellings_are_read_and_taken_out() {
        let (tls, rest) = take(
            pairs(&[
                ("sslmode", "verify-full"),
                ("sslrootcert", "/ca.pem"),
                ("application_name", "x"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(tls.mode, TlsMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(rest, pairs(&[("application_name", "x")]));
        let (tls, _) = take(
            pairs(&[("ssl_mode", "verify_ca"), ("ssl-ca", "/ca.pem")]),
            true,
        )
        .unwrap();
        assert_eq!(tls.mode, TlsMode::VerifyCa);
        let (tls, _) = take(
            pairs(&[("sslmode", "require"), ("sslrootcert", "/r")]),
            false,
        )
        .unwrap();
        assert_eq!(tls.effective_mode(), TlsMode::VerifyCa);
    }

    #[test]
    fn unsupported_spellings_name_the_supported_one() {
        for (p, mysql, needle) in [
            (("require_ssl", "true"), true, "ssl-mode=REQUIRED"),
            (
                ("verify_identity", "true"),
                true,
                "ssl-mode=VERIFY_IDENTITY",
            ),
            (("sslmode", "allow"), false, "verify-full"),
            (("ssl-mode", "sure"), true, "VERIFY_IDENTITY"),
            (("sslcert", "/c.pem"), false, "sslkey"),
        ] {
            let e = take(pairs(&[p]), mysql).unwrap_err().to_string();
            assert!(e.contains(needle), "{p:?}: {e}");
        }
    }
}
