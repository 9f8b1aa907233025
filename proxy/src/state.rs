//! State every flow shares: configuration, policy, the CA and its leaf
//! cache, the upstream TLS client, the event sink and the lifecycle tokens.
//!
//! A bottom-level module: it may import `config`, `events`, `policy`,
//! `tls`, `relay::hooks`, `onboarding` and the certs/inspectors crates, and nothing that
//! imports it (`flow`, `listener`, `gateway`, `admin`).

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use gatehouse_certs::{Ca, LeafCache};
use gatehouse_inspectors::identify::catalog::Catalog;

use crate::config::Config;
use crate::events::EventSink;
use crate::policy::{AccessPolicy, AddressBook, Identities, OwnListeners, Pinning, Policy};
use crate::relay::hooks::Interceptor;
use crate::tls::upstream::Upstream;

/// State every connection handler shares; cheap to clone.
#[derive(Clone)]
pub struct Shared {
    /// The configuration the gateway started with.
    pub config: Arc<Config>,
    /// Client and destination access rules.
    pub access: Arc<AccessPolicy>,
    /// Every address the gateway listens on: never a destination.
    pub own: Arc<OwnListeners>,
    /// The interception CA.
    pub ca: Arc<Ca>,
    /// Where events go.
    pub events: Arc<dyn EventSink>,
    /// Connection slots; a connection without one is refused.
    pub slots: Arc<Semaphore>,
    /// Cancelled when the gateway stops accepting (graceful phase).
    pub stopping: CancellationToken,
    /// Cancelled when the grace period is over (connections are cut).
    pub abort: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// The verified upstream TLS client.
    pub upstream: Upstream,
    /// Intercept / passthrough / block decisions.
    pub policy: Arc<Policy>,
    /// Who clients are.
    pub identities: Arc<Identities>,
    /// Learned certificate pinning.
    pub pinning: Arc<Pinning>,
    /// Inspection hooks of intercepted flows.
    pub interceptor: Arc<dyn Interceptor>,
    /// The app catalog (shipped, plus `intercept.app_catalog`).
    pub catalog: Arc<Catalog>,
    /// Names and apps live traffic used each server address with, for
    /// flows that name nothing themselves.
    pub addresses: Arc<AddressBook>,
    /// Minted leaves, ready for rustls, by name and upstream certificate.
    pub leaves: Arc<LeafCache<Arc<rustls::sign::CertifiedKey>>>,
    /// The onboarding page, when `[onboarding]` is on.
    pub onboarding: Option<Arc<crate::onboarding::Onboarding>>,
}

/// The [`Shared`] state in force, replaced whole by a config reload.
///
/// A listener takes a [`snapshot`](Self::snapshot) for each connection it
/// accepts, and the connection keeps it to its end: a reload never changes
/// the rules of a flow under way.
#[derive(Clone)]
pub struct Current(Arc<std::sync::RwLock<Arc<Shared>>>);

impl Current {
    /// Holds `shared` as the state in force.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(std::sync::RwLock::new(Arc::new(shared))))
    }

    /// The state in force now.
    pub fn snapshot(&self) -> Shared {
        Shared::clone(&self.0.read().expect("state lock"))
    }

    /// Puts `shared` in force for every connection accepted from now on.
    pub fn replace(&self, shared: Shared) {
        *self.0.write().expect("state lock") = Arc::new(shared);
    }
}
