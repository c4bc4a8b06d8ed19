//! rustls configurations: the server side of `[sip] tls_listen` and `[webrtc] tls_listen`
//! from `[tls] cert` and `key`, and the client side toward `sip_svr` over TLS (and RTMPS
//! servers), which checks the server's certificate against `[tls] ca` or the system's
//! bundle.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Where Linux distributions keep the bundle of trusted authorities (Debian and Ubuntu,
/// CentOS and Fedora, Alpine and others).
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration from `[tls] cert` and `key` (PEM: the certificate chain, and
/// a PKCS#8, PKCS#1 or SEC1 private key).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("[tls] cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("[tls] cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "[tls] cert {}: no certificate in the file",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("[tls] key {}: {e}", key.display()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("[tls] cert/key: {e}"))?;
    Ok(Arc::new(config))
}

/// The client configuration toward `sip_svr` or an RTMPS server: the authorities of `ca` (PEM), else of the
/// system's bundle. The server's certificate must chain to one of them and name the host
/// srgate connects to.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let (path, key) = match ca {
        Some(p) => (p.to_path_buf(), "[tls] ca"),
        None => (
            SYSTEM_BUNDLES
                .iter()
                .map(Path::new)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    format!(
                        "TLS client: no system bundle of certificate authorities ({}); set [tls] ca",
                        SYSTEM_BUNDLES.join(", ")
                    )
                })?
                .to_path_buf(),
            "the system's bundle",
        ),
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{key} {}: {e}", path.display()))?;
        // a bundle may hold a certificate rustls cannot use; the others still count
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!(
            "{key} {}: no usable certificate authority in the file",
            path.display()
        ));
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
