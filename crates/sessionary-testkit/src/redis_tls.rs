//! Certificates for TLS `redis-server` processes: a CA made at test time
//! and a server certificate it signs for `127.0.0.1`, `::1` and `localhost`,
//! written into a temporary directory (the key with mode 0600) for
//! `--tls-cert-file`, `--tls-key-file` and `--tls-ca-cert-file`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::TempDir;

/// A CA, a server certificate and a client certificate it signed, as PEM in
/// memory and as files (removed on drop).
#[derive(Debug)]
pub struct TlsFiles {
    /// The CA certificate (PEM): what a client trusts.
    pub ca_pem: String,
    /// A client certificate (PEM) the CA signed, for `tls-auth-clients yes`.
    pub client_cert_pem: String,
    /// Its private key (PEM).
    pub client_key_pem: String,
    dir: TempDir,
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Writes `contents` to `path`, readable by the owner only.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

impl TlsFiles {
    /// Makes a new CA (`common_name`) and signs a server certificate for
    /// `127.0.0.1`, `::1` and `localhost` and a client certificate.
    pub fn generate(common_name: &str) -> std::io::Result<Self> {
        let ca_key = KeyPair::generate().map_err(other)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, common_name.to_owned());
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).map_err(other)?;
        let issuer = Issuer::new(ca, &ca_key);

        let server_key = KeyPair::generate().map_err(other)?;
        let mut server = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
            "localhost".to_owned(),
        ])
        .map_err(other)?;
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        // Redis nodes are servers and, to each other (replication, the
        // Cluster bus), clients.
        server.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let server_cert = server.signed_by(&server_key, &issuer).map_err(other)?;

        let client_key = KeyPair::generate().map_err(other)?;
        let mut client = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
        client
            .distinguished_name
            .push(DnType::CommonName, "sessionary test client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer).map_err(other)?;

        let dir = TempDir::new("redis-tls");
        let files = Self {
            ca_pem: ca_cert.pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
            dir,
        };
        std::fs::write(files.ca_path(), &files.ca_pem)?;
        std::fs::write(files.cert_path(), server_cert.pem())?;
        write_private(&files.key_path(), &server_key.serialize_pem())?;
        Ok(files)
    }

    /// The CA certificate file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate file.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key file (mode 0600).
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// `redis-server` arguments: TLS only on `port` (`--port 0 --tls-port
    /// port`), this certificate, replication and the Cluster bus over TLS,
    /// clients not asked for a certificate.
    pub fn server_args(&self, port: u16) -> Vec<String> {
        let mut args: Vec<String> = ["--port", "0", "--tls-port"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.push(port.to_string());
        for (flag, path) in [
            ("--tls-cert-file", self.cert_path()),
            ("--tls-key-file", self.key_path()),
            ("--tls-ca-cert-file", self.ca_path()),
        ] {
            args.push(flag.to_owned());
            args.push(path.display().to_string());
        }
        for (flag, value) in [
            ("--tls-auth-clients", "no"),
            ("--tls-replication", "yes"),
            ("--tls-cluster", "yes"),
        ] {
            args.push(flag.to_owned());
            args.push(value.to_owned());
        }
        args
    }

    /// The same settings as lines of a configuration file (for sentinels).
    pub fn config_lines(&self, port: u16) -> String {
        format!(
            "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
            self.cert_path().display(),
            self.key_path().display(),
            self.ca_path().display(),
        )
    }

    /// `redis-cli` arguments for a TLS connection trusting the CA.
    pub fn cli_args(&self) -> Vec<String> {
        vec![
            "--tls".to_owned(),
            "--cacert".to_owned(),
            self.ca_path().display().to_string(),
        ]
    }

    /// A synchronous redis-rs client for `rediss://127.0.0.1:port`, trusting
    /// the CA.
    pub fn client(&self, port: u16) -> redis::RedisResult<redis::Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        redis::Client::build_with_tls(
            format!("rediss://127.0.0.1:{port}"),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(self.ca_pem.clone().into_bytes()),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_and_the_key_is_private() {
        let tls = TlsFiles::generate("test CA").unwrap();
        for path in [tls.ca_path(), tls.cert_path(), tls.key_path()] {
            assert!(path.is_file(), "{}", path.display());
        }
        assert!(tls.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(std::fs::read_to_string(tls.ca_path()).unwrap(), tls.ca_pem);
        assert!(
            std::fs::read_to_string(tls.key_path())
                .unwrap()
                .contains("PRIVATE KEY")
        );
        assert!(tls.client_key_pem.contains("PRIVATE KEY"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(tls.key_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let args = tls.server_args(7000);
        assert_eq!(&args[..4], ["--port", "0", "--tls-port", "7000"]);
        // Each CA is a new one.
        assert_ne!(TlsFiles::generate("test CA").unwrap().ca_pem, tls.ca_pem);
        let dir = tls.ca_path().parent().unwrap().to_owned();
        drop(tls);
        assert!(!dir.exists());
    }
}
