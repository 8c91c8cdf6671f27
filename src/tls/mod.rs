//! TLS termination, one configuration for every listener: `TlsServer` is
//! built once from nsqd's `--tls-*` settings (rustls with the `ring`
//! provider) and accepts handshakes for the V2 in-band upgrade, for
//! connections that start with a TLS ClientHello (every protocol, on the same
//! port) and for HTTPS. `Stream` is what a protocol reads and writes: the
//! plain socket or the TLS stream over it, one `match` apart, so plain TCP
//! pays nothing for TLS being possible.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::{Buf, Bytes};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::WebPkiSupportedAlgorithms;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    self, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::config::Config;

/// nsqd's deadline for the in-band upgrade's handshake (`UpgradeTLS`).
pub const UPGRADE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the first bytes of a connection are a TLS handshake record:
/// content type 22, protocol major 3, minor 0 (SSL 3.0) to 4. The fourth
/// byte is the record length's high byte, so it can be anything.
pub fn is_client_hello(magic: &[u8; 4]) -> bool {
    magic[0] == 0x16 && magic[1] == 0x03 && magic[2] <= 0x04
}

/// `--tls-client-auth-policy`, as nsqd: none, `require` (any certificate,
/// not verified) or `require-verify` (verified against `--tls-root-ca-file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    None,
    RequireAny,
    RequireVerify,
}

/// The TLS configuration of the server, shared by every listener.
pub struct TlsServer {
    /// Accepts handshakes on TCP (V2 upgrade and TLS-first connections).
    acceptor: TlsAcceptor,
    /// The same configuration with ALPN `http/1.1`, for HTTPS.
    https: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsServer")
    }
}

/// What a finished handshake established, for stats and for protocols.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// nsqd's spelling: `TLS1.2`, `TLS1.3`.
    pub version: String,
    /// Go's cipher suite name, e.g. `TLS_AES_128_GCM_SHA256`.
    pub cipher_suite: String,
    /// The ALPN protocol agreed on, empty when none.
    pub negotiated_protocol: String,
    /// The common name of the client certificate's subject, when the client
    /// sent one that has it.
    pub common_name: Option<String>,
}

impl TlsServer {
    /// The TLS configuration `config` asks for, or `None` when neither
    /// `tls_cert` nor `tls_key` is set. Refuses unreadable files, a key that
    /// does not match, and what rustls cannot do, with a message naming the
    /// setting.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Arc<TlsServer>>> {
        if config.tls_cert.is_empty() && config.tls_key.is_empty() {
            return Ok(None);
        }
        if config.tls_cert.is_empty() || config.tls_key.is_empty() {
            bail!("TLS needs both tls_cert and tls_key");
        }
        let versions = min_version(&config.tls_min_version)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.tls_cert)
            .with_context(|| format!("cannot read tls_cert {}", config.tls_cert))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("bad PEM in tls_cert {}", config.tls_cert))?;
        if certs.is_empty() {
            bail!("tls_cert {} holds no certificate", config.tls_cert);
        }
        let key = PrivateKeyDer::from_pem_file(&config.tls_key).with_context(|| {
            format!("cannot read a private key from tls_key {}", config.tls_key)
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let policy = match config.tls_client_auth_policy.as_str() {
            "" => ClientAuth::None,
            "require" => ClientAuth::RequireAny,
            "require-verify" => ClientAuth::RequireVerify,
            other => bail!(
                "invalid tls_client_auth_policy {other:?}: must be \"require\" or \"require-verify\""
            ),
        };
        let verifier: Arc<dyn ClientCertVerifier> = match policy {
            ClientAuth::None => WebPkiClientVerifier::no_client_auth(),
            ClientAuth::RequireAny => Arc::new(AnyClientCert {
                algorithms: provider.signature_verification_algorithms,
            }),
            ClientAuth::RequireVerify => {
                if config.tls_root_ca_file.is_empty() {
                    bail!("tls_client_auth_policy require-verify needs tls_root_ca_file");
                }
                let roots = roots_from_pem_file(Path::new(&config.tls_root_ca_file))
                    .map_err(|e| anyhow::anyhow!("tls_root_ca_file: {e}"))?;
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .context("tls_root_ca_file")?
            }
        };
        let server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .context("tls_min_version")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .context("tls_cert/tls_key")?;
        let mut https = server.clone();
        https.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(TlsServer {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            https: Arc::new(https),
        })))
    }

    /// Runs the server side of a handshake on `tcp`; `prefix` holds bytes
    /// already read from it that belong to the handshake (the magic of a
    /// TLS-first connection, or what followed an IDENTIFY). The caller
    /// bounds the time it may take.
    pub async fn accept(&self, tcp: TcpStream, prefix: Bytes) -> io::Result<Stream> {
        let tls = self.acceptor.accept(Rewind { prefix, tcp }).await?;
        Ok(Stream::Tls(Box::new(tls)))
    }

    /// The configuration for the HTTPS listener.
    pub fn https_config(&self) -> Arc<ServerConfig> {
        self.https.clone()
    }
}

/// The versions `--tls-min-version` allows. rustls speaks TLS 1.2 and 1.3
/// only: the older values nsqd accepts are refused rather than silently
/// raised, unless unset (nsqd's default is TLS 1.0; here it is TLS 1.2).
fn min_version(
    value: &str,
) -> anyhow::Result<&'static [&'static rustls::SupportedProtocolVersion]> {
    static BOTH: &[&rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match value {
        "" | "tls1.2" => Ok(BOTH),
        "tls1.3" => Ok(ONLY13),
        "ssl3.0" | "tls1.0" | "tls1.1" => bail!(
            "tls_min_version {value} is not supported: rustls speaks TLS 1.2 and 1.3 only; \
             use tls1.2 (or leave it unset) or tls1.3"
        ),
        other => bail!(
            "invalid tls_min_version {other:?}: one of ssl3.0, tls1.0, tls1.1, tls1.2, tls1.3"
        ),
    }
}

/// nsqd's `require` policy (Go's `RequireAnyClientCert`): a certificate is
/// mandatory, but not checked against any CA. The handshake signature is
/// still verified, so the client holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    /// The provider's signature algorithms, to check the client's proof.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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

/// The certificates of a PEM file as a root store; an unreadable file, a
/// bad certificate or none at all is an error naming the file.
pub(crate) fn roots_from_pem_file(path: &Path) -> Result<RootCertStore, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        let cert = cert.map_err(|e| format!("bad PEM in {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(roots)
}

/// rustls' cipher suite name in Go's spelling (what nsqd's stats show):
/// TLS 1.3 suites lose rustls' `TLS13_` prefix.
fn go_cipher_name(suite: rustls::CipherSuite) -> String {
    let name = suite
        .as_str()
        .map_or_else(|| format!("Unknown {}", u16::from(suite)), str::to_owned);
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

mod cert;
mod client;
mod stream;

pub use cert::subject_common_name;
pub use client::{client_config, client_config_trusting};
pub use stream::{Rewind, Stream};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_file_that_is_missing_empty_or_bad_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("nsq-gw-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("missing.pem");
        let err = roots_from_pem_file(&missing).expect_err("missing");
        assert!(
            err.contains("cannot read") && err.contains("missing.pem"),
            "{err}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").expect("write");
        let err = roots_from_pem_file(&empty).expect_err("empty");
        assert!(err.contains("holds no certificate"), "{err}");
        let bad = dir.join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        assert!(roots_from_pem_file(&bad).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn client_hello_magic() {
        assert!(is_client_hello(&[0x16, 0x03, 0x01, 0x02]));
        assert!(is_client_hello(&[0x16, 0x03, 0x03, 0xff]));
        assert!(!is_client_hello(b"  V2"));
        assert!(!is_client_hello(&[0x16, 0x03, 0x05, 0x00]));
    }

    #[test]
    fn old_versions_are_refused_with_a_reason() {
        for v in ["ssl3.0", "tls1.0", "tls1.1"] {
            let e = min_version(v).expect_err(v).to_string();
            assert!(e.contains("rustls speaks TLS 1.2 and 1.3 only"), "{e}");
        }
        assert_eq!(min_version("tls1.3").expect("1.3").len(), 1);
        assert_eq!(min_version("").expect("default").len(), 2);
        assert!(min_version("tls9").is_err());
    }

    #[test]
    fn go_cipher_names() {
        assert_eq!(
            go_cipher_name(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            go_cipher_name(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
    }

    #[test]
    fn der_walk_survives_garbage() {
        assert_eq!(subject_common_name(&[]), None);
        assert_eq!(subject_common_name(&[0x30, 0x82, 0xff]), None);
        assert_eq!(subject_common_name(&[0x30, 0x00]), None);
    }
}
