//! TLS for the daemon's listener (rustls, ring): the certificate chain and private key from the
//! PEM files named by the settings `DASHBOARD_TLS_CERT` and `DASHBOARD_TLS_KEY` (environment,
//! `.env`, `claw.yaml` `settings:`, vault). Both or neither: one without the other, a file that
//! cannot be read, or a key that does not fit the certificate stops the daemon before it
//! listens, naming the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Dirs;

/// The setting naming the certificate chain (PEM).
pub const CERT_SETTING: &str = "DASHBOARD_TLS_CERT";
/// The setting naming the private key (PEM: PKCS#8, PKCS#1 or SEC1).
pub const KEY_SETTING: &str = "DASHBOARD_TLS_KEY";

/// The TLS set-up the settings ask for: `None` without either setting.
pub fn from_settings(dirs: &Dirs) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let (layers, _) =
        crate::vault::settings(&dirs.root, &dirs.home, std::collections::BTreeMap::new());
    let get = |name: &str| {
        crate::config::resolve::DEFS
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| layers.get(*d).value)
            .filter(|v| !v.trim().is_empty())
    };
    match (get(CERT_SETTING), get(KEY_SETTING)) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            let at = |p: String| {
                let p = PathBuf::from(p.trim());
                if p.is_absolute() {
                    p
                } else {
                    dirs.root.join(p)
                }
            };
            load(&at(cert), &at(key)).map(Some)
        }
        (Some(_), None) => Err(format!(
            "{CERT_SETTING} is set but {KEY_SETTING} is not: TLS needs both (or neither)"
        )),
        (None, Some(_)) => Err(format!(
            "{KEY_SETTING} is set but {CERT_SETTING} is not: TLS needs both (or neither)"
        )),
    }
}

/// A server configuration from a PEM certificate chain and a PEM private key.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| {
            format!(
                "{CERT_SETTING} {}: cannot read a PEM certificate chain: {e}",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{CERT_SETTING} {}: no certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "{KEY_SETTING} {}: cannot read a PEM private key: {e}",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| {
            format!(
                "{KEY_SETTING} {} does not fit {CERT_SETTING} {}: {e}",
                key.display(),
                cert.display()
            )
        })?;
    // The listener speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_pem_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        std::fs::write(&key, "not a key\n").unwrap();
        let e = load(&cert, &key).unwrap_err();
        assert!(
            e.contains("cert.pem") && e.contains("no certificate"),
            "{e}"
        );
        let e = load(&dir.path().join("missing.pem"), &key).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
