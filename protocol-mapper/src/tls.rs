//! TLS for client connections (MQTT `mqtts`/`wss`, HTTP `https`): the server is checked
//! against the connection's `caCert` (PEM) or, without one, the operating system's trust store;
//! a client certificate and key (PEM) are presented when given (mutual TLS, as AWS IoT Core
//! requires). `trustAllCertificates` accepts any server certificate and is meant for tests
//! only; using it is logged.

use std::sync::Arc;

use commissioning::model::{HttpConnection, MqttConnection};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The TLS properties of a connection, named as commissioning files name them.
pub struct TlsSettings<'a> {
    pub host: &'a str,
    pub ca_cert: Option<&'a str>,
    pub client_cert: Option<&'a str>,
    pub client_private_key: Option<&'a str>,
    pub trust_all_certificates: bool,
}

impl<'a> From<&'a MqttConnection> for TlsSettings<'a> {
    fn from(c: &'a MqttConnection) -> TlsSettings<'a> {
        TlsSettings {
            host: &c.host,
            ca_cert: c.ca_cert.as_deref(),
            client_cert: c.client_cert.as_deref(),
            client_private_key: c.client_private_key.as_deref(),
            trust_all_certificates: c.trust_all_certificates,
        }
    }
}

impl<'a> From<&'a HttpConnection> for TlsSettings<'a> {
    fn from(c: &'a HttpConnection) -> TlsSettings<'a> {
        TlsSettings {
            host: &c.host,
            ca_cert: c.ca_cert.as_deref(),
            client_cert: c.client_cert.as_deref(),
            client_private_key: c.client_private_key.as_deref(),
            trust_all_certificates: c.trust_all_certificates,
        }
    }
}

pub fn client_config<'a>(
    connection: impl Into<TlsSettings<'a>>,
) -> Result<Arc<ClientConfig>, String> {
    let connection = connection.into();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if connection.trust_all_certificates {
        tracing::warn!(
            host = %connection.host,
            "trustAllCertificates is set: the server's certificate is not checked"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        builder.with_root_certificates(roots(connection.ca_cert)?)
    };
    let config = match (connection.client_cert, connection.client_private_key) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "clientCert")?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
                format!("clientPrivateKey: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}")
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("clientCert/clientPrivateKey: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn roots(ca_cert: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_cert {
        Some(pem) => {
            for certificate in certificates(pem, "caCert")? {
                roots.add(certificate).map_err(|e| format!("caCert: {e}"))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for certificate in native.certs {
                // A damaged entry in the system store must not stop the others from working.
                let _ = roots.add(certificate);
            }
            if roots.is_empty() {
                // Every handshake will fail with an unknown issuer; the status says so.
                tracing::warn!(
                    "no caCert given and no trusted certificates found on this system (package ca-certificates)"
                );
            }
        }
    }
    Ok(roots)
}

fn certificates(pem: &str, field: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{field}: not a PEM certificate: {e}"))?;
    if certificates.is_empty() {
        return Err(format!(
            "{field}: no certificate found (expected -----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(certificates)
}

/// `trustAllCertificates`: any certificate and host name are accepted; signatures of the
/// handshake are still checked, so the session key belongs to whoever holds the certificate.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
