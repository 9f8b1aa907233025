//! `gatehouse ca`: create, import, show and export the interception CA.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use gatehouse::config::Config;
use gatehouse_certs::{
    check_key_mode, Ca, CaCert, CaDescription, CaFiles, CaImport, CaInit, CaKeyAlgorithm,
    ExportFormat,
};

/// `gatehouse ca …`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new interception CA (refuses to overwrite one).
    Init(InitArgs),
    /// Import a CA certificate + key issued by the corporate PKI (an
    /// intermediate), with the chain sent to clients after each leaf.
    Import(ImportArgs),
    /// Show subject, validity, fingerprints and constraints (needs only the
    /// certificate).
    Show(ShowArgs),
    /// Write the CA certificate (never the key) for clients to install
    /// (needs only the certificate).
    Export(ExportArgs),
}

impl CaCommand {
    /// `show` and `export` read the certificate alone: no key, no rules.
    pub fn needs_only_the_certificate(&self) -> bool {
        matches!(self, Self::Show(_) | Self::Export(_))
    }
}

/// Options of `ca init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory for ca.pem and ca.key [default: `ca.dir` from the config].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Common name [default: `ca.name` from the config].
    #[arg(long)]
    name: Option<String>,
    /// Restrict the CA to these DNS domains (name constraints); repeatable.
    #[arg(long = "permit-dns", value_name = "DOMAIN")]
    permit_dns: Vec<String>,
    /// Key algorithm: ecdsa-p256 (default), ecdsa-p384 or rsa-3072.
    #[arg(long, default_value = "ecdsa-p256")]
    key_algorithm: CaKeyAlgorithm,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    days: i64,
}

/// Options of `ca import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// PEM certificate of the CA (further certificates are taken as its chain).
    #[arg(long)]
    cert: PathBuf,
    /// Unencrypted PKCS#8 PEM private key of the CA.
    #[arg(long)]
    key: PathBuf,
    /// PEM chain up to (not including) the corporate root.
    #[arg(long)]
    chain: Option<PathBuf>,
    /// Directory to import into [default: `ca.dir` from the config].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Options of `ca show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Options of `ca export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// pem; der (alias cer) for Android/Windows; mobileconfig (an iOS/macOS
    /// configuration profile); p12 (PKCS#12, the certificate only, empty
    /// password).
    #[arg(long, default_value = "pem")]
    format: ExportFormat,
    /// Output file [default: standard output].
    #[arg(long, short)]
    out: Option<PathBuf>,
}

/// Runs a `ca` subcommand against the configured CA.
pub fn main(config: &Config, cmd: CaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCommand::Init(a) => {
            let dir = a.dir.unwrap_or_else(|| config.ca.dir.clone());
            let init = CaInit {
                name: a.name.unwrap_or_else(|| config.ca.name.clone()),
                permit_dns: a.permit_dns,
                valid_days: a.days,
                key_algorithm: a.key_algorithm,
            };
            let ca = Ca::create(&CaFiles::in_dir(&dir), &init).context("creating the CA")?;
            println!("created {}", dir.join("ca.pem").display());
            print!("{}", ca.describe()?);
        }
        CaCommand::Import(a) => {
            let dir = a.dir.unwrap_or_else(|| config.ca.dir.clone());
            let source = CaImport {
                cert: a.cert,
                key: a.key,
                chain: a.chain,
            };
            let ca = Ca::import(&CaFiles::in_dir(&dir), &source).context("importing the CA")?;
            println!("imported into {}", dir.display());
            print!("{}", ca.describe()?);
        }
        CaCommand::Show(a) => {
            let d = load_cert(config)?.describe()?;
            if a.json {
                println!("{}", describe_json(&d));
            } else {
                println!("{d}");
            }
        }
        CaCommand::Export(a) => {
            let cert = load_cert(config)?;
            let bytes = cert.export(a.format, Some(&config.ca.organization))?;
            match a.out {
                Some(path) => {
                    std::fs::write(&path, &bytes)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {} ({})", path.display(), a.format);
                }
                None => std::io::stdout().write_all(&bytes)?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The CA certificate alone, as `show` and `export` need it: `ca.cert` when
/// set, else `ca.dir/ca.pem`; the chain from `ca.chain`, else (for a CA in
/// `ca.dir`) `ca.dir/chain.pem`. The key is not read, but a key file that
/// group or others can read is still refused, as `run` would refuse it.
fn load_cert(config: &Config) -> anyhow::Result<CaCert> {
    let files = config.ca.files();
    let (cert, chain) = match &config.ca.cert {
        Some(cert) => (cert.clone(), config.ca.chain.clone()),
        None => (
            config.ca.dir.join("ca.pem"),
            Some(
                config
                    .ca
                    .chain
                    .clone()
                    .unwrap_or_else(|| files.chain.clone()),
            ),
        ),
    };
    if files.key.exists() {
        check_key_mode(&files.key)?;
    }
    CaCert::load(&cert, chain.as_deref()).with_context(|| {
        format!(
            "loading the CA certificate {} (create a CA with `gatehouse ca init`)",
            cert.display()
        )
    })
}

/// `ca show --json`: one object, times in RFC 3339.
fn describe_json(d: &CaDescription) -> serde_json::Value {
    let time = |t: std::time::SystemTime| {
        time::OffsetDateTime::from(t)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    serde_json::json!({
        "subject": d.subject,
        "issuer": d.issuer,
        "kind": if d.self_signed { "root" } else { "intermediate" },
        "self_signed": d.self_signed,
        "serial": d.serial,
        "not_before": time(d.not_before),
        "not_after": time(d.not_after),
        "key_algorithm": d.key_algorithm,
        "fingerprints": {
            "sha256": d.sha256_fingerprint,
            "sha1": d.sha1_fingerprint,
        },
        "constraints": {
            "path_len": d.path_len,
            "permitted": d.permitted,
            "excluded": d.excluded,
        },
        "chain_sent": d.chain_len,
    })
}
