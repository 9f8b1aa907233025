//! The running gateway: listeners, shared state and the graceful lifecycle.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use gatehouse_certs::{Ca, CaFiles, CaInit, LeafCache, LeafCacheConfig, LeafPolicy};

use crate::config::{load_catalog, Config};
use crate::events::EventSink;
use crate::listener;
use crate::policy::{AccessPolicy, Identities, OwnListeners, Pinning, Policy};
use crate::relay::hooks::{AllowAll, Interceptor};
use crate::state::Shared;
use crate::tls::upstream::Upstream;
use crate::GatewayError;

/// A gateway with its listeners bound, ready to [`run`](Gateway::run).
pub struct Gateway {
    shared: Shared,
    proxy: TcpListener,
    transparent: Option<TcpListener>,
    admin: TcpListener,
    console: Option<ConsoleListener>,
}

/// The console's listener, ready to serve.
struct ConsoleListener {
    listener: TcpListener,
    console: Arc<crate::console::Console>,
    tls: Arc<rustls::ServerConfig>,
}

impl Gateway {
    /// Loads (or on first run creates) the CA and binds every listener.
    pub async fn bind(config: Config, events: Arc<dyn EventSink>) -> Result<Self, GatewayError> {
        Self::bind_with(config, events, Arc::new(AllowAll)).await
    }

    /// As [`bind`](Self::bind), with the inspection hooks to run on intercepted flows.
    pub async fn bind_with(
        config: Config,
        events: Arc<dyn EventSink>,
        interceptor: Arc<dyn Interceptor>,
    ) -> Result<Self, GatewayError> {
        let mut ca = load_ca(&config)?;
        ca.set_leaf_policy(LeafPolicy {
            max_lifetime: std::time::Duration::from_secs(
                86_400 * u64::from(config.intercept.leaf_max_days.max(1)),
            ),
            ..LeafPolicy::default()
        });
        let ca = Arc::new(ca);
        let provider = crate::tls::upstream::provider();
        let leaves = Arc::new(LeafCache::with_prepare(
            ca.clone(),
            LeafCacheConfig {
                capacity: config.intercept.leaf_cache_size.max(1),
                ..LeafCacheConfig::default()
            },
            move |leaf| {
                let (chain, key) = leaf.into_parts();
                let signing = provider
                    .key_provider
                    .load_private_key(key)
                    .expect("a freshly minted P-256 key loads");
                Arc::new(rustls::sign::CertifiedKey::new(chain, signing))
            },
        ));
        let upstream = Upstream::new(&config.upstream).map_err(GatewayError::Upstream)?;
        let catalog = Arc::new(load_catalog(&config).map_err(GatewayError::Catalog)?);
        let proxy = bind("proxy.listen", config.proxy.listen).await?;
        let admin = bind("admin.listen", config.admin.listen).await?;
        let transparent = match config.proxy.transparent_listen {
            Some(addr) => Some(bind("proxy.transparent_listen", addr).await?),
            None => None,
        };
        let console = match config.console.as_ref().filter(|c| c.serves()) {
            Some(c) => Some(ConsoleListener {
                listener: bind("console.listen", c.listen).await?,
                console: Arc::new(
                    crate::console::Console::new(&config, events.clone())
                        .map_err(GatewayError::Console)?,
                ),
                tls: crate::console::server_config(c, ca.clone()).map_err(GatewayError::Console)?,
            }),
            None => None,
        };
        let policy = Arc::new(Policy::new(&config.intercept));
        let identities = Arc::new(Identities::new(&config.identity));
        let pinning = Arc::new(Pinning::new(
            config.intercept.pinning_threshold,
            config.intercept.pinning_ttl,
        ));
        let own = [
            Some(&proxy),
            Some(&admin),
            transparent.as_ref(),
            console.as_ref().map(|c| &c.listener),
        ]
        .into_iter()
        .flatten()
        .filter_map(|l| l.local_addr().ok());
        let shared = Shared {
            access: Arc::new(AccessPolicy::new(&config.proxy)),
            own: Arc::new(OwnListeners::new(own)),
            slots: Arc::new(Semaphore::new(config.proxy.max_connections)),
            config: Arc::new(config),
            ca,
            events,
            stopping: CancellationToken::new(),
            abort: CancellationToken::new(),
            tracker: TaskTracker::new(),
            upstream,
            policy,
            identities,
            pinning,
            interceptor,
            catalog,
            addresses: Arc::default(),
            leaves,
        };
        Ok(Self {
            shared,
            proxy,
            transparent,
            admin,
            console,
        })
    }

    /// The bound console address, when the console serves.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console
            .as_ref()
            .and_then(|c| c.listener.local_addr().ok())
    }

    /// Cancelling this cuts every connection at once, as the end of the
    /// grace period does (a second stop signal uses it).
    pub fn abort_token(&self) -> tokio_util::sync::CancellationToken {
        self.shared.abort.clone()
    }

    /// The bound explicit-proxy address (useful when configured with port 0).
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The bound transparent listener address, if configured.
    pub fn transparent_addr(&self) -> Option<SocketAddr> {
        self.transparent.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The interception CA in use.
    pub fn ca(&self) -> &Ca {
        &self.shared.ca
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight connections finish within `proxy.shutdown_grace`, cuts the
    /// rest and flushes events.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), GatewayError> {
        let Self {
            shared,
            proxy,
            transparent,
            admin,
            console,
        } = self;
        let console = console.map(|c| {
            tokio::spawn(crate::console::serve(
                c.listener,
                c.console,
                c.tls,
                shared.stopping.clone(),
                shared.tracker.clone(),
            ))
        });
        let accept = tokio::spawn(listener::explicit::accept_loop(proxy, shared.clone()));
        let transparent = transparent
            .map(|l| tokio::spawn(listener::transparent::accept_loop(l, shared.clone())));
        let admin = tokio::spawn(listener::admin::accept_loop(admin, shared.clone()));

        shutdown.await;
        let grace = shared.config.proxy.shutdown_grace;
        tracing::info!(grace = ?grace, in_flight = shared.tracker.len(), "shutting down: no new connections");
        shared.stopping.cancel();
        let _ = accept.await;
        if let Some(t) = transparent {
            let _ = t.await;
        }
        let _ = admin.await;
        if let Some(c) = console {
            let _ = c.await;
        }
        shared.tracker.close();
        if tokio::time::timeout(grace, shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                cut = shared.tracker.len(),
                "grace period over: closing remaining connections"
            );
            shared.abort.cancel();
            shared.tracker.wait().await;
        }
        shared.events.flush();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Where the configured CA lives: the imported files, or `ca.dir`.
pub fn ca_files(config: &Config) -> CaFiles {
    match (&config.ca.cert, &config.ca.key) {
        (Some(cert), Some(key)) => CaFiles {
            cert: cert.clone(),
            key: key.clone(),
            chain: config.ca.chain.clone().unwrap_or_default(),
        },
        _ => CaFiles::in_dir(&config.ca.dir),
    }
}

fn load_ca(config: &Config) -> Result<Ca, GatewayError> {
    let ca = match (&config.ca.cert, &config.ca.key) {
        (Some(_), Some(_)) => Ca::load(&ca_files(config))?,
        _ => Ca::load_or_create(
            &CaFiles::in_dir(&config.ca.dir),
            &CaInit {
                name: config.ca.name.clone(),
                ..CaInit::default()
            },
        )?,
    };
    Ok(ca)
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { what, addr, source })
}
