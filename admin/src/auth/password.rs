//! Password hashing with argon2id (the argon2 crate's defaults, OWASP's recommendation), always
//! off the async worker threads because one hash takes tens of milliseconds of CPU and 19 MiB of
//! memory. At most `MAX_CONCURRENT_HASHES` run at once: a flood of CONNECTs or logins with made-up
//! passwords queues up instead of filling the blocking thread pool (512 threads x 19 MiB).

use std::sync::LazyLock;

use tokio::sync::Semaphore;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The shortest password accepted for users created through the API.
pub const MIN_PASSWORD_LENGTH: usize = 8;

const MAX_CONCURRENT_HASHES: usize = 4;

static HASHING: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(MAX_CONCURRENT_HASHES));

pub async fn hash(password: String) -> Result<String, String> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|e| format!("password hashing unavailable: {e}"))?;
    tokio::task::spawn_blocking(move || {
        let salt_bytes: [u8; 16] = rand::random();
        let salt =
            SaltString::encode_b64(&salt_bytes).map_err(|e| format!("cannot encode salt: {e}"))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| format!("cannot hash password: {e}"))
    })
    .await
    .map_err(|e| format!("password hashing task failed: {e}"))?
}

/// True when `password` matches `hash`; false for a wrong password or an unreadable hash.
pub async fn verify(password: Vec<u8>, hash: String) -> bool {
    let Ok(_permit) = HASHING.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(&password, &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A random password for generated accounts (the first admin, each service's broker user).
/// A new user id: random, so an id is never reused, not even across databases.
pub fn new_user_id() -> String {
    generate()
}

pub fn generate() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
