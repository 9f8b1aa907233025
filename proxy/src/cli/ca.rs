//! `gatehouse ca`: create, import, show and export the interception CA.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use gatehouse::config::Config;
use gatehouse::gateway::ca_files;
use gatehouse_certs::{Ca, CaFiles, CaImport, CaInit, CaKeyAlgorithm, ExportFormat};

/// `gatehouse ca …`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new interception CA (refuses to overwrite one).
    Init(InitArgs),
    /// Import a CA certificate + key issued by the corporate PKI (an
    /// intermediate), with the chain sent to clients after each leaf.
    Import(ImportArgs),
    /// Show subject, validity, fingerprints and constraints.
    Show,
    /// Write the CA certificate (never the key) for clients to install.
    Export(ExportArgs),
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

/// Options of `ca export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// pem, der, or mobileconfig (an iOS configuration profile).
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
        CaCommand::Show => {
            let ca = Ca::load(&ca_files(config))
                .context("loading the CA (create one with `gatehouse ca init`)")?;
            print!("{}", ca.describe()?);
        }
        CaCommand::Export(a) => {
            let ca = Ca::load(&ca_files(config))
                .context("loading the CA (create one with `gatehouse ca init`)")?;
            let bytes = ca.export(a.format)?;
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
