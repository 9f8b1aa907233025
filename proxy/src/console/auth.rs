//! Who is asking: password logins (argon2), sessions with CSRF tokens,
//! bearer tokens, and the login throttle (per name and per client address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{PasswordHash, PasswordVerifier};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::config::{ConsoleConfig, Role};

/// Names and addresses whose failures are remembered before expired ones are pruned.
const MAX_TRACKED: usize = 100_000;

/// Name of the session cookie.
pub const COOKIE: &str = "gatehouse_session";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Account or token name (the audit actor).
    pub name: String,
    /// What it may do.
    pub roles: Vec<Role>,
    /// The session's CSRF token; `None` for a bearer token (no ambient
    /// credential, so no cross-site request can carry it).
    pub csrf: Option<String>,
}

impl Principal {
    /// Whether one of its roles grants `want`.
    pub fn can(&self, want: Role) -> bool {
        self.roles.iter().any(|r| r.grants(want))
    }

    /// Whether `given` is its CSRF token (always true for bearer tokens).
    pub fn csrf_ok(&self, given: Option<&str>) -> bool {
        match &self.csrf {
            None => true,
            Some(want) => given.is_some_and(|g| same(g.as_bytes(), want.as_bytes())),
        }
    }
}

struct Session {
    principal: Principal,
    created: Instant,
    last: Instant,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    /// Unknown name or wrong password (not told apart to the caller).
    Wrong,
    /// Too many failures for this name or address: retry after this long.
    Throttled(Duration),
}

/// Accounts, sessions and the throttle.
pub struct Auth {
    config: ConsoleConfig,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    /// Verified when the name is unknown, so timing does not tell names apart.
    dummy_hash: String,
}

impl Auth {
    /// From `[console]`.
    pub fn new(config: &ConsoleConfig) -> Self {
        Self {
            config: config.clone(),
            sessions: Mutex::default(),
            failures: Mutex::default(),
            dummy_hash: hash_password("not a password").unwrap_or_default(),
        }
    }

    /// Checks `name` and `password` from `client`; on success opens a
    /// session and returns its cookie value and principal. Slow (argon2):
    /// call from a blocking thread.
    pub fn login(
        &self,
        name: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<(String, Principal), LoginError> {
        let keys = [format!("name:{name}"), format!("ip:{client}")];
        if let Some(wait) = self.throttled(&keys) {
            return Err(LoginError::Throttled(wait));
        }
        let user = self.config.users.iter().find(|u| u.name == name);
        let hash = user.map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let ok = PasswordHash::new(hash).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        let Some(user) = user.filter(|_| ok) else {
            self.failed(&keys);
            return Err(LoginError::Wrong);
        };
        self.failures
            .lock()
            .expect("throttle lock")
            .remove(&keys[0]);
        let token = random_token();
        let principal = Principal {
            name: user.name.clone(),
            roles: user.roles.clone(),
            csrf: Some(random_token()),
        };
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("session lock");
        sessions.retain(|_, s| self.live(s, now));
        sessions.insert(
            token.clone(),
            Session {
                principal: principal.clone(),
                created: now,
                last: now,
            },
        );
        Ok((token, principal))
    }

    /// The session of cookie value `token`, if live (touching it).
    pub fn session(&self, token: &str) -> Option<Principal> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("session lock");
        let live = sessions.get(token).is_some_and(|s| self.live(s, now));
        if !live {
            sessions.remove(token);
            return None;
        }
        let s = sessions.get_mut(token)?;
        s.last = now;
        Some(s.principal.clone())
    }

    /// Ends the session of cookie value `token`.
    pub fn logout(&self, token: &str) -> Option<Principal> {
        self.sessions
            .lock()
            .expect("session lock")
            .remove(token)
            .map(|s| s.principal)
    }

    /// The principal of bearer token `token`, if configured.
    pub fn bearer(&self, token: &str) -> Option<Principal> {
        let digest = hex(&Sha256::digest(token.as_bytes()));
        self.config
            .tokens
            .iter()
            .find(|t| {
                same(
                    t.token_sha256.to_ascii_lowercase().as_bytes(),
                    digest.as_bytes(),
                )
            })
            .map(|t| Principal {
                name: t.name.clone(),
                roles: t.roles.clone(),
                csrf: None,
            })
    }

    /// How long sessions last (the cookie's Max-Age).
    pub fn lifetime(&self) -> Duration {
        self.config.session_lifetime
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.created) < self.config.session_lifetime
            && now.duration_since(s.last) < self.config.session_idle
    }

    fn throttled(&self, keys: &[String]) -> Option<Duration> {
        let window = self.config.login_lockout;
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("throttle lock");
        let mut wait = None;
        for k in keys {
            let Some(times) = failures.get_mut(k) else {
                continue;
            };
            times.retain(|t| now.duration_since(*t) < window);
            if times.len() >= self.config.login_attempts as usize {
                let oldest = times[times.len() - self.config.login_attempts as usize];
                let w = window.saturating_sub(now.duration_since(oldest));
                wait = Some(wait.map_or(w, |x: Duration| x.max(w)));
            }
        }
        failures.retain(|_, v| !v.is_empty());
        wait
    }

    fn failed(&self, keys: &[String]) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("throttle lock");
        // Bounded: many distinct names cannot grow it without end.
        if failures.len() > MAX_TRACKED {
            let window = self.config.login_lockout;
            failures.retain(|_, v| v.last().is_some_and(|t| now.duration_since(*t) < window));
        }
        for k in keys {
            failures.entry(k.clone()).or_default().push(now);
        }
    }
}

/// An argon2id PHC string for `password` (default parameters, random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// 32 random bytes, base64url: session ids, CSRF and API tokens.
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time comparison.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConsoleToken, ConsoleUser};

    fn auth(attempts: u32) -> Auth {
        Auth::new(&ConsoleConfig {
            users: vec![ConsoleUser {
                name: "ana".into(),
                password_hash: hash_password("right horse").unwrap(),
                roles: vec![Role::Viewer],
            }],
            tokens: vec![ConsoleToken {
                name: "soar".into(),
                token_sha256: hex(&Sha256::digest(b"tok")),
                roles: vec![Role::Investigator],
            }],
            login_attempts: attempts,
            ..ConsoleConfig::default()
        })
    }

    #[test]
    fn login_opens_a_session_and_logout_ends_it() {
        let a = auth(5);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(a.login("ana", "wrong", ip).unwrap_err(), LoginError::Wrong);
        assert_eq!(
            a.login("bob", "right horse", ip).unwrap_err(),
            LoginError::Wrong
        );
        let (cookie, p) = a.login("ana", "right horse", ip).unwrap();
        assert!(p.csrf.is_some() && !p.csrf_ok(None) && !p.csrf_ok(Some("x")));
        assert!(p.csrf_ok(p.csrf.as_deref()));
        assert_eq!(a.session(&cookie).unwrap().name, "ana");
        a.logout(&cookie);
        assert!(a.session(&cookie).is_none());
        assert!(a.bearer("tok").is_some_and(|p| p.csrf_ok(None)));
        assert!(a.bearer("nope").is_none());
    }

    #[test]
    fn failures_throttle_the_name_and_the_address() {
        let a = auth(2);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let other: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(a.login("ana", "x", ip).unwrap_err(), LoginError::Wrong);
        }
        // Even the right password is refused now, from anywhere, for this name.
        assert!(matches!(
            a.login("ana", "right horse", other),
            Err(LoginError::Throttled(_))
        ));
        // And this address is throttled for any name.
        assert!(matches!(
            a.login("zed", "y", ip),
            Err(LoginError::Throttled(_))
        ));
    }
}
