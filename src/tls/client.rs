//! TLS client configurations: the gateway's own (an `https://` auth server,
//! verified against a CA file or the system's roots), and the tests', the
//! bench's and tools' (a CA, an optional client certificate, or none).

use std::path::Path;

use super::*;

/// A client configuration trusting `ca_pem` (PEM text), for tests, the
/// bench and tools: optionally presenting a client certificate.
pub fn client_config(
    ca_pem: Option<&[u8]>,
    client_cert: Option<(&[u8], &[u8])>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("protocol versions")?;
    let builder = match ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(cert.context("CA PEM")?)
                    .context("CA certificate")?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify {
                algorithms: provider.signature_verification_algorithms,
            })),
    };
    let config = match client_cert {
        Some((cert_pem, key_pem)) => {
            let certs = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .context("client certificate PEM")?;
            let key = PrivateKeyDer::from_pem_slice(key_pem).context("client key PEM")?;
            builder
                .with_client_auth_cert(certs, key)
                .context("client certificate")?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A server certificate verifier that accepts anything (the bench's and
/// tools' `--tls-insecure`); the handshake signature is still checked.
#[derive(Debug)]
struct NoVerify {
    /// The provider's signature algorithms.
    algorithms: WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A verifying client configuration trusting the PEM file `ca_file`
/// (`--tls-root-ca-file`), or the system's roots: the gateway's own client
/// side (an `https://` auth server).
pub fn client_config_trusting(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = match ca_file {
        Some(path) => roots_from_pem_file(path)?,
        None => {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            roots
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
