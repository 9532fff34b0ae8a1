//! Test certificates made with the openssl command line: a CA and the leaves it signs, or a self-signed leaf.
//!
//! Every file is PEM in the given directory, named after the certificate (`<name>.pem`, its
//! unencrypted PKCS#8 key `<name>.key`), valid for two days, with `CN=<name>`. A CA has
//! `basicConstraints=critical,CA:TRUE` and `keyUsage=critical,keyCertSign,cRLSign`; a leaf has
//! `subjectAltName` (when given hosts), `basicConstraints=critical,CA:FALSE`,
//! `keyUsage=critical,digitalSignature` and one `extendedKeyUsage`. Arguments are fixed or
//! come from the test itself; nothing passes through a shell.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The key algorithm of a CA (and of the leaves it signs) or of a self-signed leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256 (`prime256v1`).
    EcP256,
    /// RSA, 2048 bits.
    Rsa2048,
}

impl KeyKind {
    fn new_key_arguments(self) -> &'static [&'static str] {
        match self {
            KeyKind::EcP256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
            KeyKind::Rsa2048 => &["-newkey", "rsa:2048"],
        }
    }
}

/// What a leaf certificate is for: its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// `extendedKeyUsage=serverAuth`.
    Server,
    /// `extendedKeyUsage=clientAuth`.
    Client,
}

/// A certificate and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl CertificateFiles {
    fn named(directory: &Path, name: &str) -> CertificateFiles {
        CertificateFiles {
            certificate: directory.join(format!("{name}.pem")),
            key: directory.join(format!("{name}.key")),
        }
    }
}

/// A certificate authority in a directory, signing leaves into the same directory.
#[derive(Debug)]
pub struct TestCa {
    directory: PathBuf,
    key_kind: KeyKind,
    files: CertificateFiles,
}

impl TestCa {
    /// A CA with an ECDSA P-256 key: `<name>.pem`, `<name>.key` in `directory`.
    pub fn new(directory: &Path, name: &str) -> TestCa {
        TestCa::with_key(directory, name, KeyKind::EcP256)
    }

    /// A CA whose own key and whose leaves' keys are of `key_kind`.
    pub fn with_key(directory: &Path, name: &str, key_kind: KeyKind) -> TestCa {
        let files = CertificateFiles::named(directory, name);
        let subject = format!("/CN={name}");
        let mut arguments = vec!["req", "-x509", "-nodes", "-days", "2"];
        arguments.extend(key_kind.new_key_arguments());
        arguments.extend(["-subj", &subject]);
        arguments.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        arguments.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        let key_path = files.key.to_string_lossy().into_owned();
        let certificate_path = files.certificate.to_string_lossy().into_owned();
        arguments.extend(["-keyout", &key_path, "-out", &certificate_path]);
        openssl(directory, &arguments);
        TestCa {
            directory: directory.to_path_buf(),
            key_kind,
            files,
        }
    }

    /// The CA's certificate (the file a peer trusts).
    pub fn certificate(&self) -> &Path {
        &self.files.certificate
    }

    /// A leaf `<name>.pem`/`<name>.key` signed by this CA, for `hosts` (DNS names or IP
    /// addresses, in this order; none for a client certificate) and `usage`.
    pub fn leaf(&self, name: &str, hosts: &[&str], usage: Usage) -> CertificateFiles {
        let directory = &self.directory;
        let files = CertificateFiles::named(directory, name);
        let request = directory.join(format!("{name}.csr"));
        let extensions = directory.join(format!("{name}.ext"));
        std::fs::write(&extensions, leaf_extensions(hosts, usage).join("\n") + "\n")
            .unwrap_or_else(|error| panic!("{}: {error}", extensions.display()));
        let subject = format!("/CN={name}");
        let key_path = files.key.to_string_lossy().into_owned();
        let request_path = request.to_string_lossy().into_owned();
        let mut request_arguments = vec!["req", "-nodes"];
        request_arguments.extend(self.key_kind.new_key_arguments());
        request_arguments.extend([
            "-subj",
            &subject,
            "-keyout",
            &key_path,
            "-out",
            &request_path,
        ]);
        openssl(directory, &request_arguments);
        let ca_certificate = self.files.certificate.to_string_lossy().into_owned();
        let ca_key = self.files.key.to_string_lossy().into_owned();
        let extensions_path = extensions.to_string_lossy().into_owned();
        let certificate_path = files.certificate.to_string_lossy().into_owned();
        openssl(
            directory,
            &[
                "x509",
                "-req",
                "-in",
                &request_path,
                "-CA",
                &ca_certificate,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &extensions_path,
                "-out",
                &certificate_path,
            ],
        );
        files
    }
}

/// A self-signed leaf `<name>.pem`/`<name>.key` (a peer trusts the certificate itself), with
/// the extensions of a CA-signed leaf.
pub fn self_signed(
    directory: &Path,
    name: &str,
    hosts: &[&str],
    usage: Usage,
    key_kind: KeyKind,
) -> CertificateFiles {
    let files = CertificateFiles::named(directory, name);
    let subject = format!("/CN={name}");
    let extensions = leaf_extensions(hosts, usage);
    let mut arguments = vec!["req", "-x509", "-nodes", "-days", "2"];
    arguments.extend(key_kind.new_key_arguments());
    arguments.extend(["-subj", &subject]);
    for extension in &extensions {
        arguments.extend(["-addext", extension]);
    }
    let key_path = files.key.to_string_lossy().into_owned();
    let certificate_path = files.certificate.to_string_lossy().into_owned();
    arguments.extend(["-keyout", &key_path, "-out", &certificate_path]);
    openssl(directory, &arguments);
    files
}

/// The extension lines of a leaf, in openssl's configuration syntax.
fn leaf_extensions(hosts: &[&str], usage: Usage) -> Vec<String> {
    let mut extensions = Vec::new();
    if !hosts.is_empty() {
        let names: Vec<String> = hosts
            .iter()
            .map(|host| match host.parse::<IpAddr>() {
                Ok(_) => format!("IP:{host}"),
                Err(_) => format!("DNS:{host}"),
            })
            .collect();
        extensions.push(format!("subjectAltName={}", names.join(",")));
    }
    extensions.push("basicConstraints=critical,CA:FALSE".to_string());
    extensions.push("keyUsage=critical,digitalSignature".to_string());
    let purpose = match usage {
        Usage::Server => "serverAuth",
        Usage::Client => "clientAuth",
    };
    extensions.push(format!("extendedKeyUsage={purpose}"));
    extensions
}

fn openssl(directory: &Path, arguments: &[&str]) {
    let output = Command::new("openssl")
        .args(arguments)
        .current_dir(directory)
        .output()
        .expect("the openssl command line tool (tests/install-deps.sh installs it)");
    assert!(
        output.status.success(),
        "openssl {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl verify` of `leaf` against `ca` for a purpose: whether it verifies.
    fn verifies(ca: &Path, leaf: &Path, purpose: &str) -> bool {
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(ca)
            .args(["-purpose", purpose])
            .arg(leaf)
            .output()
            .expect("openssl")
            .status
            .success()
    }

    fn text_of(certificate: &Path) -> String {
        let output = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(certificate)
            .output()
            .expect("openssl");
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn leaves_verify_against_their_ca_for_their_usage_only() {
        let directory = tempfile::tempdir().unwrap();
        let ca = TestCa::new(directory.path(), "ca1");
        let other_ca = TestCa::with_key(directory.path(), "ca2", KeyKind::Rsa2048);
        let server = ca.leaf("server", &["localhost", "127.0.0.1"], Usage::Server);
        let client = other_ca.leaf("client", &[], Usage::Client);
        assert_eq!(server.certificate, directory.path().join("server.pem"));
        assert!(server.key.exists() && client.key.exists());
        assert!(verifies(ca.certificate(), &server.certificate, "sslserver"));
        assert!(!verifies(
            ca.certificate(),
            &server.certificate,
            "sslclient"
        ));
        assert!(!verifies(
            ca.certificate(),
            &client.certificate,
            "sslclient"
        ));
        assert!(verifies(
            other_ca.certificate(),
            &client.certificate,
            "sslclient"
        ));
        let server_text = text_of(&server.certificate);
        assert!(
            server_text.contains("DNS:localhost, IP Address:127.0.0.1"),
            "{server_text}"
        );
        assert!(server_text.contains("CA:FALSE"), "{server_text}");
        assert!(server_text.contains("id-ecPublicKey"), "{server_text}");
        let client_text = text_of(&client.certificate);
        assert!(!client_text.contains("Subject Alternative Name"));
        assert!(client_text.contains("rsaEncryption"), "{client_text}");
        let ca_text = text_of(ca.certificate());
        assert!(ca_text.contains("CA:TRUE"), "{ca_text}");
        assert!(ca_text.contains("Certificate Sign, CRL Sign"), "{ca_text}");
    }

    #[test]
    fn self_signed_leaves_verify_against_themselves() {
        let directory = tempfile::tempdir().unwrap();
        let leaf = self_signed(
            directory.path(),
            "broker",
            &["127.0.0.1"],
            Usage::Server,
            KeyKind::Rsa2048,
        );
        assert!(verifies(&leaf.certificate, &leaf.certificate, "sslserver"));
        let text = text_of(&leaf.certificate);
        assert!(text.contains("IP Address:127.0.0.1"), "{text}");
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
    }
}
