//! `gatehouse console`: the key pair findings are sealed to, password
//! hashes and API tokens for `[console]`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use gatehouse::config::Config;
use gatehouse::events::seal::{OpenKey, SealKey};
use sha2::Digest;

/// `gatehouse console …`
#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Create the console's key pair: writes the private key (mode 0600) and
    /// prints the `public_key` line for `[console]`.
    Keygen {
        /// Where to write the private key (refused if it exists).
        #[arg(long, value_name = "FILE", default_value = "console.key")]
        out: PathBuf,
    },
    /// Read a password on stdin and print its argon2 PHC string for
    /// `[[console.users]] password_hash`.
    HashPassword,
    /// Make an API bearer token: prints the token (give it to the script)
    /// and the `token_sha256` for `[[console.tokens]]`.
    Token,
}

/// Runs a `console` subcommand.
pub fn main(cmd: ConsoleCommand) -> anyhow::Result<ExitCode> {
    // Written, not printed: `| head` ends quietly (a broken pipe is an error, not a panic).
    let mut w = std::io::stdout().lock();
    match cmd {
        ConsoleCommand::Keygen { out } => {
            use std::os::unix::fs::OpenOptionsExt;
            let key = OpenKey::generate();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| {
                    format!("{}: cannot create the private key file", out.display())
                })?;
            writeln!(f, "{}", key.to_base64())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("{}: cannot write", out.display()))?;
            writeln!(
                w,
                "# private key written to {} (mode 0600): keep it only where the console runs",
                out.display()
            )?;
            writeln!(w, "[console]")?;
            writeln!(w, "public_key = \"{}\"", key.public().to_base64())?;
            writeln!(w, "private_key_file = \"{}\"", out.display())?;
            Ok(ExitCode::SUCCESS)
        }
        ConsoleCommand::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                anyhow::bail!("empty password on stdin");
            }
            let hash = gatehouse::console::hash_password(password).map_err(anyhow::Error::msg)?;
            writeln!(w, "{hash}")?;
            Ok(ExitCode::SUCCESS)
        }
        ConsoleCommand::Token => {
            let token = gatehouse::console::random_token();
            let digest = gatehouse::console::hex(&sha2::Sha256::digest(token.as_bytes()));
            writeln!(
                w,
                "# give this token to the script (Authorization: Bearer …); it is not stored"
            )?;
            writeln!(w, "# token: {token}")?;
            writeln!(w, "[[console.tokens]]")?;
            writeln!(w, "name = \"soar\"")?;
            writeln!(w, "token_sha256 = \"{digest}\"")?;
            writeln!(w, "roles = [\"viewer\"]")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The key the gateway seals findings to: `console.public_key`, else the
/// public half of `console.private_key_file`; none without `[console]`.
pub fn seal_key(config: &Config) -> anyhow::Result<Option<SealKey>> {
    let Some(c) = &config.console else {
        return Ok(None);
    };
    let public = match &c.public_key {
        Some(k) => Some(SealKey::from_base64(k).context("console.public_key")?),
        None => None,
    };
    let private = match &c.private_key_file {
        Some(p) => Some(
            OpenKey::load(p)
                .map_err(anyhow::Error::msg)
                .context("console.private_key_file")?,
        ),
        None => None,
    };
    match (public, private) {
        (Some(p), Some(k)) if p.to_base64() != k.public().to_base64() => anyhow::bail!(
            "console.public_key does not match console.private_key_file: findings would be sealed to a key this console cannot open"
        ),
        (Some(p), _) => Ok(Some(p)),
        (None, Some(k)) => Ok(Some(k.public())),
        (None, None) => Ok(None),
    }
}
