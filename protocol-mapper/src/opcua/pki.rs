//! The certificate folder async-opcua reads: the client's own certificate and key (from the
//! commissioning file's PEM strings, or generated once and kept), and the trusted server
//! certificates. One folder per connection, so two connections never share trust decisions.

use std::fs;
use std::path::{Path, PathBuf};

use commissioning::model::OpcuaConnection;
use opcua::crypto::{CertificateStore, PrivateKey, X509};

/// Where the client's own files go, relative to the folder (async-opcua's layout).
const OWN_CERTIFICATE: &str = "own/cert.der";
const OWN_PRIVATE_KEY: &str = "private/private.pem";

#[derive(Debug, Clone, PartialEq)]
pub struct Pki {
    pub dir: PathBuf,
    /// The client brings its own certificate; otherwise one is generated when security needs it.
    pub own_certificate: bool,
    /// No trusted certificates were given: any server certificate is accepted (and logged).
    pub trust_any_server: bool,
}

/// Writes the connection's certificates into `dir`. Bad PEM is an error naming the property.
pub fn prepare(dir: &Path, spec: &OpcuaConnection) -> Result<Pki, String> {
    let io =
        |what: &str, e: std::io::Error| format!("cannot write {what} in {}: {e}", dir.display());
    for sub in ["own", "private", "trusted", "rejected"] {
        fs::create_dir_all(dir.join(sub)).map_err(|e| io(sub, e))?;
    }
    let own_certificate = match (&spec.client_certificate, &spec.client_private_key) {
        (Some(certificate), Some(key)) => {
            let certificate = X509::from_pem(certificate.as_bytes())
                .and_then(|c| c.to_der())
                .map_err(|e| format!("clientCertificate is not a PEM certificate: {e}"))?;
            PrivateKey::from_pem(key.as_bytes())
                .map_err(|e| format!("clientPrivateKey is not a PEM private key: {e:?}"))?;
            write_private(&dir.join(OWN_CERTIFICATE), &certificate)
                .map_err(|e| io("the client certificate", e))?;
            write_private(&dir.join(OWN_PRIVATE_KEY), key.as_bytes())
                .map_err(|e| io("the client key", e))?;
            true
        }
        (None, None) => false,
        _ => {
            return Err("give both clientCertificate and clientPrivateKey, or neither".to_string());
        }
    };
    // The trusted folder mirrors the commissioning file exactly: certificates trusted by an
    // earlier version of the service are removed.
    let trusted = dir.join("trusted");
    for entry in fs::read_dir(&trusted).map_err(|e| io("trusted", e))? {
        let path = entry.map_err(|e| io("trusted", e))?.path();
        fs::remove_file(&path).map_err(|e| io("trusted", e))?;
    }
    for (index, pem) in spec.trusted_server_certificates.iter().enumerate() {
        let certificate = X509::from_pem(pem.as_bytes()).map_err(|e| {
            format!("trustedServerCertificates[{index}] is not a PEM certificate: {e}")
        })?;
        let der = certificate
            .to_der()
            .map_err(|e| format!("trustedServerCertificates[{index}]: {e}"))?;
        fs::write(
            trusted.join(CertificateStore::cert_file_name(&certificate)),
            der,
        )
        .map_err(|e| io("a trusted certificate", e))?;
    }
    Ok(Pki {
        dir: dir.to_path_buf(),
        own_certificate,
        trust_any_server: spec.trusted_server_certificates.is_empty(),
    })
}

/// Key material is readable by the gateway's user only.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    fs::write(path, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> OpcuaConnection {
        OpcuaConnection {
            host: "cnc".into(),
            port: 4840,
            resource_path: None,
            username: None,
            password: None,
            options: None,
            client_certificate: None,
            client_private_key: None,
            trusted_server_certificates: Vec::new(),
            connection_strategy: None,
        }
    }

    #[test]
    fn bad_pem_names_the_property() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut broken = spec();
        broken.trusted_server_certificates = vec!["-----BEGIN CERTIFICATE-----\nnope".into()];
        let error = prepare(dir.path(), &broken).expect_err("bad PEM");
        assert!(
            error.starts_with("trustedServerCertificates[0] is not a PEM certificate"),
            "{error}"
        );
        let mut half = spec();
        half.client_certificate = Some("x".into());
        assert_eq!(
            prepare(dir.path(), &half),
            Err("give both clientCertificate and clientPrivateKey, or neither".into())
        );
    }

    #[test]
    fn no_trusted_certificates_means_any_server() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = prepare(dir.path(), &spec()).expect("prepared");
        assert!(pki.trust_any_server);
        assert!(!pki.own_certificate);
        assert!(dir.path().join("trusted").is_dir());
    }
}
