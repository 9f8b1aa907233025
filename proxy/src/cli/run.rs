//! `gatehouse run`: the gateway until SIGTERM/SIGINT.

use std::process::ExitCode;

use anyhow::Context;
use gatehouse::config::{ClickHouseConfig, Loaded};
use gatehouse::events::Pipeline;
use gatehouse::inspect::{Inspection, Rules};
use gatehouse::Gateway;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

use super::RunArgs;

/// Starts the runtime and serves until a stop signal.
pub fn main(loaded: Loaded, args: RunArgs) -> anyhow::Result<ExitCode> {
    let Loaded {
        mut config, source, ..
    } = loaded;
    if let Some(listen) = args.listen {
        config.proxy.listen = listen;
    }
    if let Some(url) = args.clickhouse {
        config
            .clickhouse
            .get_or_insert_with(ClickHouseConfig::default)
            .url = url;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gatehouse")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let pipeline = Pipeline::start(&config.events, config.clickhouse.as_ref())?;
        match super::console::seal_key(&config)? {
            Some(key) => pipeline.sink().seal_findings_to(key),
            None => tracing::info!("no [console] key: findings carry no sealed evidence"),
        }
        let rules = match Rules::load(&config.rules.dir) {
            Ok(r) => Arc::new(r),
            Err(errors) => {
                for e in &errors {
                    eprintln!("error: {e}");
                }
                anyhow::bail!("{} error(s) in the DLP rules ({})", errors.len(), config.rules.dir.display());
            }
        };
        tracing::info!(rules = rules.snapshot().len(), dir = %config.rules.dir.display(), "DLP rules loaded");
        // Reload on SIGHUP, and when a rule file changes.
        let watched = rules.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = hup.recv() => watched.reload_logged("SIGHUP"),
                    _ = tick.tick() => watched.reload_if_changed(),
                }
            }
        });
        let inspection = Arc::new(
            Inspection::new(rules, pipeline.sink(), config.events.store_message_text)
                .with_window(config.intercept.inspect_window),
        );
        let gateway = Gateway::bind_with(config, pipeline.sink(), inspection).await?;
        let ca = gateway
            .ca()
            .files()
            .map(|f| f.cert.clone())
            .unwrap_or_default();
        tracing::info!(
            config = %source,
            proxy = %gateway.proxy_addr(),
            admin = %gateway.admin_addr(),
            ca = %ca.display(),
            "gatehouse running; clients must trust the CA certificate"
        );
        println!(
            "gatehouse: explicit proxy on {}, admin on {}",
            gateway.proxy_addr(),
            gateway.admin_addr()
        );
        if let Some(c) = gateway.console_addr() {
            println!("gatehouse: console on https://{c}/");
        }
        if let Some(t) = gateway.transparent_addr() {
            println!("gatehouse: transparent listener on {t}");
        }
        println!("gatehouse: interception CA certificate: {}", ca.display());
        let abort = gateway.abort_token();
        let stop = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
            // A second signal does not wait out the grace period: every
            // connection is cut now (each still records its events), the
            // journal is flushed and the process exits.
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tracing::warn!("second stop signal: closing every connection now");
                abort.cancel();
            });
        };
        gateway.run(stop).await?;
        // Bounded: what is not shipped by then ships at the next start.
        pipeline.shutdown(std::time::Duration::from_secs(5)).await;
        Ok(ExitCode::SUCCESS)
    })
}
