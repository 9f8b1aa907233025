//! `gatehouse run`: the gateway until SIGTERM/SIGINT; SIGHUP reloads the
//! whole configuration and the rules.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use gatehouse::config::{self, ClickHouseConfig, Config, ConfigSource, Loaded};
use gatehouse::events::{AuditEvent, Event, EventSink, Pipeline};
use gatehouse::gateway::Reloader;
use gatehouse::inspect::{Inspection, Rules};
use gatehouse::{reload, Gateway};
use tokio::signal::unix::{signal, SignalKind};

use super::RunArgs;

/// Starts the runtime and serves until a stop signal.
pub fn main(loaded: Loaded, args: RunArgs) -> anyhow::Result<ExitCode> {
    let Loaded {
        mut config, source, ..
    } = loaded;
    let overrides = Overrides {
        listen: args.listen,
        clickhouse: args.clickhouse,
    };
    overrides.apply(&mut config);
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
        let inspection = Arc::new(
            Inspection::new(rules.clone(), pipeline.sink(), config.events.store_message_text)
                .with_window(config.intercept.inspect_window),
        );
        let gateway = Gateway::bind_with(config, pipeline.sink(), inspection.clone()).await?;
        // SIGHUP reloads the config and the rules; a changed rule file
        // reloads the rules alone. One task: reloads never overlap.
        let reload = Reload {
            path: match &source {
                ConfigSource::File(p) => Some(p.clone()),
                ConfigSource::Defaults => None,
            },
            overrides,
            reloader: gateway.reloader(),
            rules: rules.clone(),
            inspection,
            events: pipeline.sink(),
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = hup.recv() => reload.run("SIGHUP").await,
                    _ = tick.tick() => reload.rules.reload_if_changed(),
                }
            }
        });
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
        if let Some(q) = gateway.quic_addr() {
            println!("gatehouse: transparent QUIC (UDP) listener on {q}");
        }
        let (page, page_tls) = gateway.onboarding_addrs();
        if let Some(page) = page {
            println!("gatehouse: onboarding page on http://{page}/");
        }
        if let Some(tls) = page_tls {
            println!("gatehouse: onboarding over HTTPS on {tls}");
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

/// What `run` was told on its command line: applied again on every reload,
/// so a reload never undoes it.
struct Overrides {
    listen: Option<SocketAddr>,
    clickhouse: Option<String>,
}

impl Overrides {
    fn apply(&self, config: &mut Config) {
        if let Some(listen) = self.listen {
            config.proxy.listen = listen;
        }
        if let Some(url) = &self.clickhouse {
            config
                .clickhouse
                .get_or_insert_with(ClickHouseConfig::default)
                .url = url.clone();
        }
    }
}

/// A config reload: the file read and checked as `gatehouse check` does,
/// the rules compiled, new listeners bound, and only then everything put
/// in force at once; any problem refuses the whole reload and the running
/// configuration stays. Each attempt is an `audit` event.
struct Reload {
    path: Option<PathBuf>,
    overrides: Overrides,
    reloader: Reloader,
    rules: Arc<Rules>,
    inspection: Arc<Inspection>,
    events: Arc<dyn EventSink>,
}

impl Reload {
    async fn run(&self, why: &str) {
        let detail = match self.attempt().await {
            Ok(applied) => {
                tracing::info!(%why, detail = %applied, "configuration reloaded");
                format!("applied: {applied}")
            }
            Err(problems) => {
                for p in &problems {
                    tracing::error!(%why, problem = %p, "config reload: {p}");
                }
                tracing::error!(
                    %why,
                    problems = problems.len(),
                    "config reload refused; the running configuration stays"
                );
                format!("refused: {}", problems.join("; "))
            }
        };
        self.events.emit(Event::Audit(AuditEvent {
            actor: "gatehouse".into(),
            client: None,
            action: "config_reload".into(),
            target: None,
            reason: why.into(),
            detail,
        }));
    }

    /// Puts the new configuration in force and says what changed, or
    /// returns every problem that refuses it.
    async fn attempt(&self) -> Result<String, Vec<String>> {
        let loaded = config::load(self.path.as_deref()).map_err(|problems| {
            problems
                .0
                .iter()
                .map(|p| format!("{}: {p}", if p.is_error() { "error" } else { "warning" }))
                .collect::<Vec<_>>()
        })?;
        for w in &loaded.warnings {
            tracing::warn!(warning = %w, "config reload: {w}");
        }
        let mut config = loaded.config;
        self.overrides.apply(&mut config);
        let running = self.reloader.config();
        let restart = reload::keep_restart_only(&running, &mut config);
        let changed = reload::changed_keys(&running, &config);
        let mut problems = Vec::new();
        let rules = Rules::load(&config.rules.dir)
            .map_err(|errors| {
                problems.extend(errors.iter().map(|e| format!("error: rules.dir: {e}")));
            })
            .ok();
        let (store_text, window) = (
            config.events.store_message_text,
            config.intercept.inspect_window,
        );
        let prepared = self
            .reloader
            .prepare(config)
            .await
            .map_err(|errors| problems.extend(errors.into_iter().map(|e| format!("error: {e}"))))
            .ok();
        let (Some(rules), Some(prepared)) = (rules, prepared) else {
            return Err(problems);
        };
        let count = rules.snapshot().len();
        self.rules.replace_with(rules);
        self.inspection.set_options(store_text, window);
        let moved = self.reloader.commit(prepared);
        for key in &restart {
            tracing::warn!(
                key = %key,
                "config reload: {key} changed; it takes effect at restart, the running value stays"
            );
        }
        let mut said = vec![if changed.is_empty() {
            "no config change".to_string()
        } else {
            format!("changed {}", changed.join(", "))
        }];
        said.extend(moved);
        said.push(format!("{count} DLP rule(s)"));
        if !restart.is_empty() {
            said.push(format!(
                "needs restart (running value kept): {}",
                restart.join(", ")
            ));
        }
        Ok(said.join("; "))
    }
}
