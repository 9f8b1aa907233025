//! Who is behind a flow: VPN address pools and proxy logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::config::{IdentityConfig, IdentityPool, ProxyUser};

/// The user and device behind a flow, as far as known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub user: Option<String>,
    /// Device name.
    pub device: Option<String>,
    /// Groups, for policy.
    pub groups: Vec<String>,
}

/// Why proxy credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Proxy-Authorization` header although one is required.
    #[error("proxy authentication required")]
    Missing,
    /// Unknown user, wrong password, or a malformed header.
    #[error("invalid proxy credentials")]
    Invalid,
}

/// Identity lookups, built once from `[identity]`.
#[derive(Debug)]
pub struct Identities {
    pools: Vec<IdentityPool>,
    users: HashMap<String, ProxyUser>,
    required: bool,
    /// SHA-256 of header values already verified: Argon2 is deliberately slow.
    verified: Mutex<HashMap<[u8; 32], String>>,
}

impl Identities {
    /// Builds lookups from `[identity]`.
    pub fn new(config: &IdentityConfig) -> Self {
        Self {
            pools: config.pools.clone(),
            users: config
                .users
                .iter()
                .map(|u| (u.name.clone(), u.clone()))
                .collect(),
            required: config.require_proxy_auth,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The identity of a client address, by the most specific matching pool.
    pub fn by_address(&self, ip: IpAddr) -> Identity {
        self.pools
            .iter()
            .filter(|p| p.cidr.contains(ip))
            .max_by_key(|p| p.cidr.0.prefix_len())
            .map(|p| Identity {
                user: p.user.clone(),
                device: p.device.clone(),
                groups: p.groups.clone(),
            })
            .unwrap_or_default()
    }

    /// Applies a `Proxy-Authorization` header (if any) on top of the
    /// address identity. Refuses bad credentials, and missing ones when required.
    pub fn authenticate(&self, ip: IpAddr, header: Option<&[u8]>) -> Result<Identity, AuthError> {
        let mut who = self.by_address(ip);
        let Some(header) = header else {
            return if self.required {
                Err(AuthError::Missing)
            } else {
                Ok(who)
            };
        };
        let key: [u8; 32] = Sha256::digest(header).into();
        let cached = self.verified.lock().expect("auth cache").get(&key).cloned();
        let name = match cached {
            Some(name) => name,
            None => {
                let name = self.verify_basic(header)?;
                let mut cache = self.verified.lock().expect("auth cache");
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(key, name.clone());
                name
            }
        };
        let user = self.users.get(&name).ok_or(AuthError::Invalid)?;
        who.user = Some(name);
        who.groups.extend(user.groups.iter().cloned());
        Ok(who)
    }

    fn verify_basic(&self, header: &[u8]) -> Result<String, AuthError> {
        let text = std::str::from_utf8(header).map_err(|_| AuthError::Invalid)?;
        let (scheme, b64) = text.trim().split_once(' ').ok_or(AuthError::Invalid)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(AuthError::Invalid);
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| AuthError::Invalid)?;
        let raw = String::from_utf8(raw).map_err(|_| AuthError::Invalid)?;
        let (name, password) = raw.split_once(':').ok_or(AuthError::Invalid)?;
        let user = self.users.get(name).ok_or(AuthError::Invalid)?;
        let hash = PasswordHash::new(&user.password_hash).map_err(|_| AuthError::Invalid)?;
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .map_err(|_| AuthError::Invalid)?;
        Ok(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    fn hash(pw: &str) -> String {
        let salt = SaltString::encode_b64(b"fixed-test-salt!").unwrap();
        argon2::Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn basic(user: &str, pw: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
        .into_bytes()
    }

    #[test]
    fn pools_and_logins() {
        let cfg = IdentityConfig {
            pools: vec![
                IdentityPool {
                    cidr: "10.8.0.0/16".parse().unwrap(),
                    user: None,
                    device: None,
                    groups: vec!["vpn".into()],
                },
                IdentityPool {
                    cidr: "10.8.0.2".parse().unwrap(),
                    user: Some("alice".into()),
                    device: Some("alice-phone".into()),
                    groups: vec![],
                },
            ],
            users: vec![ProxyUser {
                name: "bob".into(),
                password_hash: hash("s3cret"),
                groups: vec!["sales".into()],
            }],
            require_proxy_auth: false,
        };
        let ids = Identities::new(&cfg);
        let alice = ids.by_address("10.8.0.2".parse().unwrap());
        assert_eq!(alice.device.as_deref(), Some("alice-phone"));
        assert_eq!(
            ids.by_address("10.8.9.9".parse().unwrap()).groups,
            vec!["vpn".to_string()]
        );
        let ip = "127.0.0.1".parse().unwrap();
        let bob = ids.authenticate(ip, Some(&basic("bob", "s3cret"))).unwrap();
        assert_eq!(
            (bob.user.as_deref(), bob.groups.as_slice()),
            (Some("bob"), &["sales".to_string()][..])
        );
        // Cached path gives the same answer.
        assert_eq!(
            ids.authenticate(ip, Some(&basic("bob", "s3cret"))).unwrap(),
            bob
        );
        assert_eq!(
            ids.authenticate(ip, Some(&basic("bob", "wrong"))),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            ids.authenticate(ip, Some(b"Bearer x")),
            Err(AuthError::Invalid)
        );
        assert!(ids.authenticate(ip, None).is_ok());
    }
}
