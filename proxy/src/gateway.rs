//! The running gateway: listeners, shared state and the graceful lifecycle.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use gatehouse_certs::{Ca, CaFiles, CaInit, LeafCache, LeafCacheConfig, LeafPolicy};

use crate::config::{load_catalog, Config};
use crate::events::EventSink;
use crate::listener;
use crate::policy::{AccessPolicy, Identities, OwnListeners, Pinning, Policy};
use crate::relay::hooks::{AllowAll, Interceptor};
use crate::state::{Current, Shared};
use crate::tls::upstream::Upstream;
use crate::GatewayError;

/// A gateway with its listeners bound, ready to [`run`](Gateway::run).
pub struct Gateway {
    current: Current,
    listeners: Arc<Mutex<Listeners>>,
    ca: Arc<Ca>,
    /// The QUIC (UDP) listener: bound at start, not moved by a reload.
    quic: Option<tokio::net::UdpSocket>,
    /// The DNS (UDP 53) listener: bound at start, not moved by a reload.
    dns: Option<tokio::net::UdpSocket>,
    /// The investigator's console: bound at start, not moved by a reload.
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
        let stopping = CancellationToken::new();
        let mut listeners = Listeners::default();
        for kind in Kind::ALL {
            if let Some(addr) = kind.addr(&config) {
                let socket = bind(kind.key(), addr).await?;
                listeners
                    .entries
                    .push(Entry::new(kind, addr, socket, &stopping)?);
            }
        }
        let proxy_addr = listeners
            .entries
            .iter()
            .find(|e| e.kind == Kind::Proxy)
            .map_or(config.proxy.listen, |e| e.local);
        let onboarding =
            crate::onboarding::Onboarding::new(&config, ca.clone(), proxy_addr)?.map(Arc::new);
        let quic = match &config.quic {
            Some(q) => Some(crate::quic::bind(q).map_err(|source| GatewayError::Bind {
                what: "quic.listen",
                addr: q.listen,
                source,
            })?),
            None => None,
        };
        let dns = match &config.dns {
            Some(d) => Some(crate::dns::bind(d).map_err(|source| GatewayError::Bind {
                what: "dns.listen",
                addr: d.listen,
                source,
            })?),
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
        listeners
            .fixed
            .extend(console.as_ref().and_then(|c| c.listener.local_addr().ok()));
        let shared = Shared {
            access: Arc::new(AccessPolicy::new(&config.proxy)),
            own: Arc::new(listeners.own()),
            slots: Arc::new(Semaphore::new(config.proxy.max_connections)),
            config: Arc::new(config),
            ca: ca.clone(),
            events,
            stopping,
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
            onboarding,
        };
        Ok(Self {
            current: Current::new(shared),
            listeners: Arc::new(Mutex::new(listeners)),
            ca,
            quic,
            dns,
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
        self.current.snapshot().abort
    }

    /// What reloads this gateway's configuration while it runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            current: self.current.clone(),
            listeners: self.listeners.clone(),
        }
    }

    /// The bound explicit-proxy address (useful when configured with port 0).
    pub fn proxy_addr(&self) -> SocketAddr {
        self.reloader()
            .local_addr(Kind::Proxy)
            .expect("the explicit proxy is always bound")
    }

    /// The bound transparent listener address, if configured.
    pub fn transparent_addr(&self) -> Option<SocketAddr> {
        self.reloader().local_addr(Kind::Transparent)
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.reloader()
            .local_addr(Kind::Admin)
            .expect("the admin listener is always bound")
    }

    /// The bound onboarding page addresses (plain HTTP, HTTPS), if configured.
    pub fn onboarding_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let r = self.reloader();
        (
            r.local_addr(Kind::Onboarding),
            r.local_addr(Kind::OnboardingTls),
        )
    }

    /// The bound QUIC (UDP) listener address, if configured.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The bound DNS (UDP) listener address, if configured.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The interception CA in use.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight connections finish within `proxy.shutdown_grace`, cuts the
    /// rest and flushes events.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), GatewayError> {
        self.listeners
            .lock()
            .expect("listeners lock")
            .start(&self.current);
        let quic = self.quic.take().and_then(|socket| {
            let shared = self.current.snapshot();
            let cfg = shared.config.quic.clone()?;
            Some(tokio::spawn(crate::quic::accept_loop(
                socket,
                self.current.clone(),
                shared.stopping.child_token(),
                cfg,
            )))
        });
        let dns = self.dns.take().and_then(|socket| {
            let shared = self.current.snapshot();
            let cfg = shared.config.dns.clone()?;
            Some(tokio::spawn(crate::dns::accept_loop(
                socket,
                self.current.clone(),
                shared.stopping.child_token(),
                cfg,
            )))
        });
        let console = self.console.take().map(|c| {
            let shared = self.current.snapshot();
            tokio::spawn(crate::console::serve(
                c.listener,
                c.console,
                c.tls,
                shared.stopping.clone(),
                shared.tracker.clone(),
            ))
        });

        shutdown.await;
        // The state in force at the end: a reload may have changed the grace.
        let shared = self.current.snapshot();
        let grace = shared.config.proxy.shutdown_grace;
        tracing::info!(grace = ?grace, in_flight = shared.tracker.len(), "shutting down: no new connections");
        shared.stopping.cancel();
        let loops = self.listeners.lock().expect("listeners lock").take_tasks();
        for task in loops.into_iter().chain(quic).chain(dns).chain(console) {
            let _ = task.await;
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

/// The gateway's TCP listeners, each with the config key of its address.
/// A new listener is one more variant here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `proxy.listen`: the explicit proxy.
    Proxy,
    /// `proxy.transparent_listen`: redirected VPN traffic.
    Transparent,
    /// `admin.listen`: health, readiness, metrics.
    Admin,
    /// `onboarding.listen`: the employees' CA page over plain HTTP.
    Onboarding,
    /// `onboarding.https_listen`: the same page and the trust check over HTTPS.
    OnboardingTls,
}

impl Kind {
    const ALL: [Self; 5] = [
        Self::Proxy,
        Self::Transparent,
        Self::Admin,
        Self::Onboarding,
        Self::OnboardingTls,
    ];

    /// The config key of its address.
    pub fn key(self) -> &'static str {
        match self {
            Self::Proxy => "proxy.listen",
            Self::Transparent => "proxy.transparent_listen",
            Self::Admin => "admin.listen",
            Self::Onboarding => "onboarding.listen",
            Self::OnboardingTls => "onboarding.https_listen",
        }
    }

    /// Its address in `config`; `None` when it is not configured.
    fn addr(self, config: &Config) -> Option<SocketAddr> {
        match self {
            Self::Proxy => Some(config.proxy.listen),
            Self::Transparent => config.proxy.transparent_listen,
            Self::Admin => Some(config.admin.listen),
            Self::Onboarding => config.onboarding.listen,
            Self::OnboardingTls => config.onboarding.https_listen,
        }
    }

    fn accept(
        self,
        socket: TcpListener,
        current: Current,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        match self {
            Self::Proxy => tokio::spawn(listener::explicit::accept_loop(socket, current, stop)),
            Self::Transparent => {
                tokio::spawn(listener::transparent::accept_loop(socket, current, stop))
            }
            Self::Admin => tokio::spawn(listener::admin::accept_loop(socket, current, stop)),
            Self::Onboarding => tokio::spawn(listener::onboarding::accept_loop(
                socket, current, stop, false,
            )),
            Self::OnboardingTls => tokio::spawn(listener::onboarding::accept_loop(
                socket, current, stop, true,
            )),
        }
    }
}

/// One bound listener: before [`run`](Gateway::run) its socket, after it
/// the accept loop that owns the socket. Its connections are not its own:
/// they live in the gateway's task tracker, so stopping the loop (a
/// reload moved it) closes the port and nothing else.
struct Entry {
    kind: Kind,
    configured: SocketAddr,
    local: SocketAddr,
    socket: Option<TcpListener>,
    /// Cancelled when the gateway stops accepting, or the listener moves.
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Entry {
    fn new(
        kind: Kind,
        configured: SocketAddr,
        socket: TcpListener,
        stopping: &CancellationToken,
    ) -> Result<Self, GatewayError> {
        let local = socket.local_addr().map_err(|source| GatewayError::Bind {
            what: kind.key(),
            addr: configured,
            source,
        })?;
        Ok(Self {
            kind,
            configured,
            local,
            socket: Some(socket),
            stop: stopping.child_token(),
            task: None,
        })
    }
}

#[derive(Default)]
struct Listeners {
    /// Accept loops run (set by [`Gateway::run`]).
    started: bool,
    entries: Vec<Entry>,
    /// Addresses of listeners a reload never moves (the console): never
    /// destinations either.
    fixed: Vec<SocketAddr>,
    /// Loops of listeners a reload moved or removed, awaited at shutdown.
    retired: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Every bound address: never a destination.
    fn own(&self) -> OwnListeners {
        OwnListeners::new(
            self.entries
                .iter()
                .map(|e| e.local)
                .chain(self.fixed.iter().copied()),
        )
    }

    /// Starts the accept loop of every listener not yet started.
    fn start(&mut self, current: &Current) {
        self.started = true;
        for e in &mut self.entries {
            if let Some(socket) = e.socket.take() {
                e.task = Some(e.kind.accept(socket, current.clone(), e.stop.clone()));
            }
        }
    }

    fn take_tasks(&mut self) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<_> = self.retired.drain(..).collect();
        tasks.extend(self.entries.iter_mut().filter_map(|e| e.task.take()));
        tasks
    }

    fn retire(&mut self, kind: Kind) {
        if let Some(i) = self.entries.iter().position(|e| e.kind == kind) {
            let old = self.entries.remove(i);
            old.stop.cancel();
            self.retired.extend(old.task);
        }
    }
}

/// Reloads the configuration of a running [`Gateway`]: everything a new
/// flow reads (access, identity, policy, upstream roots and exceptions,
/// catalog, limits) is built from the new file and swapped in whole; flows
/// under way keep the state they started with. Listeners whose address
/// changed are bound anew; the others, and every open connection, stay.
#[derive(Clone)]
pub struct Reloader {
    current: Current,
    listeners: Arc<Mutex<Listeners>>,
}

/// A new state built and its new listeners bound, not yet in force.
pub struct Prepared {
    shared: Shared,
    /// Listeners to move (`Some`: the new socket) or close (`None`).
    moves: Vec<(Kind, Option<Entry>)>,
}

impl Reloader {
    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.current.snapshot().config
    }

    /// The bound address of a listener, if it runs.
    pub fn local_addr(&self, kind: Kind) -> Option<SocketAddr> {
        let listeners = self.listeners.lock().expect("listeners lock");
        listeners
            .entries
            .iter()
            .find(|e| e.kind == kind)
            .map(|e| e.local)
    }

    /// Builds the state `config` asks for and binds the listeners it
    /// moves; nothing is in force yet. Every problem found is returned.
    pub async fn prepare(&self, config: Config) -> Result<Prepared, Vec<String>> {
        let old = self.current.snapshot();
        let mut problems = Vec::new();
        let upstream = Upstream::new(&config.upstream)
            .map_err(|e| problems.push(format!("upstream: {e}")))
            .ok();
        let catalog = load_catalog(&config).map_err(|e| problems.push(e)).ok();
        let (running, fixed): (Vec<(Kind, SocketAddr, SocketAddr)>, Vec<SocketAddr>) = {
            let listeners = self.listeners.lock().expect("listeners lock");
            (
                listeners
                    .entries
                    .iter()
                    .map(|e| (e.kind, e.configured, e.local))
                    .collect(),
                listeners.fixed.clone(),
            )
        };
        let mut moves = Vec::new();
        for kind in Kind::ALL {
            let was = running.iter().find(|r| r.0 == kind).map(|r| r.1);
            let wanted = kind.addr(&config);
            if was == wanted {
                continue;
            }
            let Some(addr) = wanted else {
                moves.push((kind, None));
                continue;
            };
            match bind(kind.key(), addr).await {
                Ok(socket) => match Entry::new(kind, addr, socket, &old.stopping) {
                    Ok(entry) => moves.push((kind, Some(entry))),
                    Err(e) => problems.push(e.to_string()),
                },
                Err(e) => problems.push(e.to_string()),
            }
        }
        let (Some(upstream), Some(catalog), true) = (upstream, catalog, problems.is_empty()) else {
            return Err(problems);
        };
        let own = running
            .iter()
            .filter(|r| !moves.iter().any(|m| m.0 == r.0))
            .map(|r| r.2)
            .chain(moves.iter().filter_map(|m| m.1.as_ref().map(|e| e.local)))
            .chain(fixed);
        let shared = Shared {
            access: Arc::new(AccessPolicy::new(&config.proxy)),
            own: Arc::new(OwnListeners::new(own)),
            upstream,
            policy: Arc::new(Policy::new(&config.intercept)),
            identities: Arc::new(Identities::new(&config.identity)),
            catalog: Arc::new(catalog),
            config: Arc::new(config),
            ..old
        };
        Ok(Prepared { shared, moves })
    }

    /// Puts a prepared state in force: new connections use it from now
    /// on. Returns what happened to the listeners, one line each.
    pub fn commit(&self, prepared: Prepared) -> Vec<String> {
        let Prepared { shared, moves } = prepared;
        let old = self.current.snapshot();
        resize_slots(
            &shared.slots,
            old.config.proxy.max_connections,
            shared.config.proxy.max_connections,
        );
        let mut listeners = self.listeners.lock().expect("listeners lock");
        let mut said = Vec::new();
        for (kind, entry) in moves {
            let was = listeners
                .entries
                .iter()
                .find(|e| e.kind == kind)
                .map(|e| e.local);
            listeners.retire(kind);
            match entry {
                Some(entry) => {
                    said.push(match was {
                        Some(was) => format!("{} moved from {was} to {}", kind.key(), entry.local),
                        None => format!("{} opened on {}", kind.key(), entry.local),
                    });
                    listeners.entries.push(entry);
                }
                None => said.push(format!("{} closed", kind.key())),
            }
        }
        self.current.replace(shared);
        if listeners.started {
            listeners.start(&self.current);
        }
        said
    }
}

/// Gives the connection slots a new size. A smaller one takes effect as
/// connections end: the slots in use are never taken back.
fn resize_slots(slots: &Arc<Semaphore>, old: usize, new: usize) {
    if new > old {
        slots.add_permits(new - old);
    } else if new < old {
        let want = old - new;
        let left = want - slots.forget_permits(want);
        if left > 0 {
            let slots = slots.clone();
            tokio::spawn(async move {
                let n = u32::try_from(left).unwrap_or(u32::MAX);
                if let Ok(permits) = slots.acquire_many_owned(n).await {
                    permits.forget();
                }
            });
        }
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
