//! `[console]`: the investigator's console (its HTTPS listener, accounts,
//! roles, sessions) and the key findings' evidence is sealed to.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problem;

/// `[console]`. The section absent: no console and no sealed evidence.
/// Present: findings are sealed to `public_key` (or the key of
/// `private_key_file`), and the listener serves when at least one account
/// (`[[console.users]]` or `[[console.tokens]]`) is configured.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// HTTPS listener; loopback by default.
    pub listen: SocketAddr,
    /// Host name the console's certificate names (with the listen address);
    /// default `localhost`.
    pub name: String,
    /// A certificate chain (PEM) to serve instead of one minted from the
    /// interception CA; needs `key`.
    pub cert: Option<PathBuf>,
    /// The private key (PEM, mode 0600) of `cert`.
    pub key: Option<PathBuf>,
    /// The console's X25519 public key (base64, from `gatehouse console
    /// keygen`) that gateways seal findings' evidence to.
    pub public_key: Option<String>,
    /// Where the console runs: the matching private key (base64, mode 0600).
    pub private_key_file: Option<PathBuf>,
    /// How long a session lasts after login.
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
    /// A session unused this long ends.
    #[serde(with = "humantime_serde")]
    pub session_idle: Duration,
    /// Failed logins allowed per name, and per client address, within
    /// `login_lockout`; further attempts are refused until it has passed.
    pub login_attempts: u32,
    /// Window (and lockout) of the login throttle.
    #[serde(with = "humantime_serde")]
    pub login_lockout: Duration,
    /// Findings of the same user (else device, else client address),
    /// conversation and rule within one such window (aligned to the epoch,
    /// UTC) form one incident.
    #[serde(with = "humantime_serde")]
    pub incident_window: Duration,
    /// Accounts that log in with a password.
    pub users: Vec<ConsoleUser>,
    /// API bearer tokens for scripts and SOAR tools.
    pub tokens: Vec<ConsoleToken>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9443)),
            name: "localhost".into(),
            cert: None,
            key: None,
            public_key: None,
            private_key_file: None,
            session_lifetime: Duration::from_secs(8 * 3600),
            session_idle: Duration::from_secs(30 * 60),
            login_attempts: 5,
            login_lockout: Duration::from_secs(15 * 60),
            incident_window: Duration::from_secs(24 * 3600),
            users: Vec::new(),
            tokens: Vec::new(),
        }
    }
}

/// One `[[console.users]]` account.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    /// Login name.
    pub name: String,
    /// Argon2 PHC string (`gatehouse console hash-password`).
    pub password_hash: String,
    /// What the account may do.
    pub roles: Vec<Role>,
}

/// One `[[console.tokens]]` API token.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleToken {
    /// Who the token acts as in audit events.
    pub name: String,
    /// SHA-256 of the token, hex (`gatehouse console token` prints both).
    pub token_sha256: String,
    /// What the token may do.
    pub roles: Vec<Role>,
}

/// What a console account may do.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read incidents, conversations and inspectability (masked).
    Viewer,
    /// Viewer, plus triage (status, assignee, notes) and export.
    Investigator,
    /// Viewer, plus revealing sealed evidence with a reason.
    Revealer,
    /// Everything.
    Admin,
}

impl Role {
    /// Whether holding `self` grants `want`.
    pub fn grants(self, want: Role) -> bool {
        // Every role reads: a revealer must find a finding to reveal it.
        self == Role::Admin || self == want || want == Role::Viewer
    }
}

impl ConsoleConfig {
    /// Whether the listener serves (some account is configured).
    pub fn serves(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    pub(super) fn resolve_paths(&mut self, fix: &impl Fn(&mut PathBuf)) {
        let fix = |p: &mut PathBuf| fix(p);
        self.cert.iter_mut().for_each(&fix);
        self.key.iter_mut().for_each(&fix);
        self.private_key_file.iter_mut().for_each(&fix);
    }

    /// Problems of this section (file modes, hashes, keys), each naming its key.
    pub(super) fn validate(&self, file: Option<&Path>, out: &mut Vec<Problem>) {
        let err = |out: &mut Vec<Problem>, key: &str, msg: String| {
            out.push(Problem::error(file, &format!("console.{key}"), msg))
        };
        if !self.listen.ip().is_loopback() {
            out.push(Problem::warning(
                file,
                "console.listen",
                format!(
                    "{} is not loopback: investigators reach the console over the network",
                    self.listen
                ),
            ));
        }
        match (&self.cert, &self.key) {
            (Some(_), None) => err(
                out,
                "key",
                "missing: `console.cert` needs its `console.key`".into(),
            ),
            (None, Some(_)) => err(
                out,
                "cert",
                "missing: `console.key` needs its `console.cert`".into(),
            ),
            (Some(cert), Some(key)) => {
                if let Err(e) = std::fs::metadata(cert) {
                    err(out, "cert", format!("{}: {e}", cert.display()));
                }
                if let Err(e) = owner_only(key) {
                    err(out, "key", e);
                }
            }
            (None, None) => {}
        }
        let public = match &self.public_key {
            Some(k) => match key_bytes(k) {
                Ok(b) => Some(b),
                Err(e) => {
                    err(out, "public_key", e);
                    None
                }
            },
            None => None,
        };
        if let Some(path) = &self.private_key_file {
            match owner_only(path).and_then(|()| {
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
            }) {
                Err(e) => err(out, "private_key_file", e),
                Ok(text) => {
                    if let Err(e) = key_bytes(&text) {
                        err(out, "private_key_file", format!("{}: {e}", path.display()));
                    }
                }
            }
        } else if self.serves() && public.is_some() {
            out.push(Problem::warning(
                file,
                "console.private_key_file",
                "not set: the console cannot reveal sealed evidence here",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("users[{i}]");
            if u.name.trim().is_empty() {
                err(out, &format!("{key}.name"), "must not be empty".into());
            } else if !names.insert(u.name.clone()) {
                err(
                    out,
                    &format!("{key}.name"),
                    format!("`{}` is listed twice", u.name),
                );
            }
            match argon2::PasswordHash::new(&u.password_hash) {
                Ok(h) if h.algorithm.as_str().starts_with("argon2") => {}
                Ok(h) => err(
                    out,
                    &format!("{key}.password_hash"),
                    format!("algorithm `{}` is not argon2", h.algorithm),
                ),
                Err(e) => err(
                    out,
                    &format!("{key}.password_hash"),
                    format!("not an argon2 PHC string ({e}); make one with `gatehouse console hash-password`"),
                ),
            }
            if u.roles.is_empty() {
                err(
                    out,
                    &format!("{key}.roles"),
                    "empty: the account could do nothing".into(),
                );
            }
        }
        for (i, t) in self.tokens.iter().enumerate() {
            let key = format!("tokens[{i}]");
            if t.name.trim().is_empty() {
                err(out, &format!("{key}.name"), "must not be empty".into());
            }
            if t.token_sha256.len() != 64 || !t.token_sha256.bytes().all(|b| b.is_ascii_hexdigit())
            {
                err(
                    out,
                    &format!("{key}.token_sha256"),
                    "must be 64 hex digits (SHA-256 of the token; `gatehouse console token` prints it)".into(),
                );
            }
            if t.roles.is_empty() {
                err(
                    out,
                    &format!("{key}.roles"),
                    "empty: the token could do nothing".into(),
                );
            }
        }
        for (key, d) in [
            ("session_lifetime", self.session_lifetime),
            ("session_idle", self.session_idle),
            ("login_lockout", self.login_lockout),
            ("incident_window", self.incident_window),
        ] {
            if d.is_zero() {
                err(out, key, "must be longer than zero".into());
            }
        }
        if self.login_attempts == 0 {
            err(out, "login_attempts", "must be at least 1".into());
        }
    }
}

/// 32 bytes of base64, as `gatehouse console keygen` writes keys.
fn key_bytes(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    if b.len() != 32 {
        return Err(format!("{} bytes, expected 32 (an X25519 key)", b.len()));
    }
    Ok(b)
}

/// The file exists and neither group nor others may read it.
fn owner_only(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = m.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: mode {mode:04o} lets group or others read it; run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    fn errors(text: &str) -> String {
        match load_str(text, std::path::Path::new("/tmp/gh-console-test.toml")) {
            Ok(l) => l.warnings.iter().map(|w| format!("{w}\n")).collect(),
            Err(p) => p.to_string(),
        }
    }

    #[test]
    fn console_mistakes_name_their_key_and_file() {
        let text = "[console]\npublic_key = \"short\"\nprivate_key_file = \"/nonexistent/console.key\"\n\
                    [[console.users]]\nname = \"ana\"\npassword_hash = \"plain\"\nroles = []\n\
                    [[console.tokens]]\nname = \"soar\"\ntoken_sha256 = \"abc\"\nroles = [\"viewer\"]\n";
        let e = errors(text);
        for key in [
            "console.public_key",
            "console.private_key_file",
            "console.users[0].password_hash",
            "console.users[0].roles",
            "console.tokens[0].token_sha256",
        ] {
            assert!(e.contains(key), "{key} missing in:\n{e}");
        }
        assert!(e.contains("/tmp/gh-console-test.toml"), "{e}");
        let e = errors("[console]\n[[console.users]]\nname = \"a\"\npassword_hash = \"x\"\nroles = [\"boss\"]\n");
        assert!(e.contains("console.users"), "{e}");
    }

    #[test]
    fn a_private_key_others_can_read_is_refused_naming_file_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("console.key");
        std::fs::write(&key, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let text = format!("[console]\nprivate_key_file = \"{}\"\n", key.display());
        let e = errors(&text);
        assert!(
            e.contains("console.private_key_file") && e.contains("0640"),
            "{e}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!errors(&text).contains("error"), "{}", errors(&text));
    }

    #[test]
    fn roles_grant_what_they_say() {
        use super::Role::*;
        assert!(Admin.grants(Revealer));
        assert!(Investigator.grants(Viewer));
        assert!(!Viewer.grants(Investigator));
        assert!(!Investigator.grants(Revealer));
        assert!(!Revealer.grants(Investigator));
    }
}
