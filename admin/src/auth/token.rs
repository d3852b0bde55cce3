//! API tokens: HS256 JWTs signed with a 256-bit secret generated into the data folder on first
//! start (mode 0600). Revocation works two ways: logout revokes one token by id; a password change
//! or user deletion raises the user's generation, which every older token carries.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User name.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    pub iat: i64,
    /// Token id, for revocation.
    pub jti: String,
    /// The user's token generation when the token was issued.
    pub generation: i64,
    /// The user's immutable id: a token never works for another account of the same name.
    /// Tokens issued before ids existed have none and are refused.
    #[serde(default)]
    pub uid: String,
}

pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Signer {
    /// Loads the secret from `path`, creating it if it does not exist.
    pub fn load_or_create(path: &Path) -> std::io::Result<Signer> {
        let secret = match std::fs::read(path) {
            Ok(secret) if secret.len() >= 32 => secret,
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} is shorter than 32 bytes; delete it to generate a new one (all tokens become invalid)",
                        path.display()
                    ),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret: [u8; 32] = rand::random();
                crate::write_private_file(path, &secret)?;
                secret.to_vec()
            }
            Err(e) => return Err(e),
        };
        Ok(Signer::from_secret(&secret))
    }

    pub fn from_secret(secret: &[u8]) -> Signer {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Signer {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| format!("cannot sign token: {e}"))
    }

    /// The claims of a token with a valid signature that has not expired.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_verifies_and_rejects_tampering_and_expiry() {
        let signer = Signer::from_secret(&[7u8; 32]);
        let now = crate::now_secs();
        let claims = Claims {
            sub: "admin".into(),
            exp: now + 60,
            iat: now,
            jti: "t1".into(),
            generation: 0,
            uid: "u-1".into(),
        };
        let token = signer.sign(&claims).expect("sign");
        assert_eq!(signer.verify(&token).map(|c| c.sub), Some("admin".into()));
        assert!(
            Signer::from_secret(&[8u8; 32]).verify(&token).is_none(),
            "other key"
        );
        let expired = signer
            .sign(&Claims {
                exp: now - 1,
                ..claims
            })
            .expect("sign");
        assert!(signer.verify(&expired).is_none(), "expired");
        assert!(signer.verify("not.a.token").is_none());
    }
}
