//! One-time autologin keys (§10.2 step 10): an RSA-2048 pair, private as PKCS#1 PEM (what X2Go Client reads).

use thiserror::Error;

/// Why a key pair could not be made.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("RSA key generation failed: {0}")]
    Generate(String),
    #[error("key encoding failed: {0}")]
    Encode(String),
}

/// A generated key pair.
#[derive(Clone)]
pub struct KeyPair {
    /// `-----BEGIN RSA PRIVATE KEY-----` … with a trailing newline.
    pub private_pem: String,
    /// `no-X11-forwarding,no-user-rc ssh-rsa <base64> <user>@<client>` for authorized_keys.
    pub authorized_line: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KeyPair")
            .field("authorized_line", &self.authorized_line)
            .finish_non_exhaustive()
    }
}

/// Generates a fresh pair for `user` connecting from `client` (blocking: ~100 ms, run it on a
/// blocking thread).
pub fn generate(user: &str, client: &str) -> Result<KeyPair, KeyError> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let mut rng = rsa::rand_core::OsRng;
    let private = rsa::RsaPrivateKey::new(&mut rng, 2048)
        .map_err(|error| KeyError::Generate(error.to_string()))?;
    let private_pem = private
        .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|error| KeyError::Encode(error.to_string()))?
        .to_string();
    let public = private.to_public_key();
    let key_data = ssh_key::public::KeyData::Rsa(ssh_key::public::RsaPublicKey {
        e: ssh_key::Mpint::from_positive_bytes(&public.e().to_bytes_be())
            .map_err(|error| KeyError::Encode(error.to_string()))?,
        n: ssh_key::Mpint::from_positive_bytes(&public.n().to_bytes_be())
            .map_err(|error| KeyError::Encode(error.to_string()))?,
    });
    let openssh = ssh_key::PublicKey::new(key_data, format!("{user}@{client}"))
        .to_openssh()
        .map_err(|error| KeyError::Encode(error.to_string()))?;
    Ok(KeyPair {
        private_pem,
        authorized_line: format!("no-X11-forwarding,no-user-rc {openssh}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_pkcs1_pem_and_openssh_lines() {
        let pair = generate("alice", "127.0.0.1").unwrap();
        assert!(pair
            .private_pem
            .starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(pair
            .private_pem
            .ends_with("-----END RSA PRIVATE KEY-----\n"));
        assert!(pair
            .private_pem
            .lines()
            .skip(1)
            .take(3)
            .all(|line| line.len() == 64));
        let fields: Vec<&str> = pair.authorized_line.split(' ').collect();
        assert_eq!(fields[0], "no-X11-forwarding,no-user-rc");
        assert_eq!(fields[1], "ssh-rsa");
        assert_eq!(fields[3], "alice@127.0.0.1");
        let again = generate("alice", "127.0.0.1").unwrap();
        assert_ne!(pair.private_pem, again.private_pem);
    }
}
