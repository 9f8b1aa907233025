//! What live traffic taught the gateway about addresses: the name each
//! server address was reached by (a TLS flow's SNI, a CONNECT host), so
//! that a later flow to that address that names nothing (no SNI: MTProto,
//! WhatsApp's Noise pipe, call media) is attributed to its app; and which
//! apps each client was just using with which server (the signalling a
//! call's media follows). Feeds the sans-IO
//! [`ClientContext`](gatehouse_inspectors::identify::context::ClientContext).
//!
//! An address that was named for two different apps inside the window
//! (a CDN or a shared front end) attributes nothing: a wrong app is worse
//! than none.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use gatehouse_inspectors::identify::catalog::Catalog;
use gatehouse_inspectors::identify::context::{ClientContext, ContextLimits};

/// How long a name seen on a flow stands for its address (seconds).
pub const NAME_TTL_SECS: u32 = 600;

/// The marker stored for an address named for more than one app.
const SHARED: &str = "";

/// Addresses and the names and apps live traffic used them with.
pub struct AddressBook {
    context: Mutex<ClientContext>,
    epoch: Instant,
}

impl Default for AddressBook {
    fn default() -> Self {
        Self::new(ContextLimits::default())
    }
}

impl AddressBook {
    /// An empty book with these bounds.
    pub fn new(limits: ContextLimits) -> Self {
        Self {
            context: Mutex::new(ClientContext::new(limits)),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Remembers that `addr` was reached as `name`. When the address
    /// already stands for a name of another app, it stands for none.
    pub fn learn_name(&self, catalog: &Catalog, addr: IpAddr, name: &str) {
        self.learn_resolved(catalog, addr, name, NAME_TTL_SECS);
    }

    /// Remembers that `addr` stands for `name` for `ttl_secs` (a DNS
    /// answer's TTL, capped by the caller; the book clamps it to
    /// [`ResolvedLimits`](gatehouse_inspectors::identify::resolved::ResolvedLimits)
    /// too). The same rule as [`learn_name`](Self::learn_name): an address
    /// named for two apps stands for none.
    pub fn learn_resolved(&self, catalog: &Catalog, addr: IpAddr, name: &str, ttl_secs: u32) {
        let now = self.now();
        let app_of = |n: &str| catalog.lookup_host(n).map(|a| a.id.clone());
        let mut ctx = self.context.lock().expect("address book lock");
        let name = match ctx.resolved(addr, now) {
            Some(SHARED) => SHARED.to_string(),
            Some(old) if old != name && app_of(old) != app_of(name) => SHARED.to_string(),
            _ => name.to_string(),
        };
        ctx.observe_name(addr, &name, ttl_secs, now);
    }

    /// Remembers that `client` used `app` with `server` just now.
    pub fn learn_app(&self, client: IpAddr, server: IpAddr, app: &str) {
        let now = self.now();
        self.context
            .lock()
            .expect("address book lock")
            .observe_app(client, server, app, now);
    }

    /// The one name `addr` was reached by recently, if there is one.
    pub fn name_of(&self, addr: IpAddr) -> Option<String> {
        let now = self.now();
        let ctx = self.context.lock().expect("address book lock");
        ctx.resolved(addr, now)
            .filter(|n| *n != SHARED)
            .map(str::to_string)
    }

    /// Apps `client` used with `server` within the signalling window, most
    /// recent first.
    pub fn signalled_to(&self, client: IpAddr, server: IpAddr) -> Vec<String> {
        let now = self.now();
        self.context
            .lock()
            .expect("address book lock")
            .signalled_to(client, server, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::builtin().clone()
    }

    #[test]
    fn a_name_stands_for_its_address_until_another_app_claims_it() {
        let (book, cat) = (AddressBook::default(), catalog());
        let a: IpAddr = "157.240.1.1".parse().unwrap();
        assert_eq!(book.name_of(a), None);
        book.learn_name(&cat, a, "web.whatsapp.com");
        assert_eq!(book.name_of(a).as_deref(), Some("web.whatsapp.com"));
        // Another name of the same app keeps the address attributed.
        book.learn_name(&cat, a, "mmg.whatsapp.net");
        assert!(book.name_of(a).is_some());
        // A name of another app makes the address shared: no attribution,
        // and it stays so while the entry lives.
        book.learn_name(&cat, a, "discord.com");
        assert_eq!(book.name_of(a), None);
        book.learn_name(&cat, a, "web.whatsapp.com");
        assert_eq!(book.name_of(a), None);
    }

    #[test]
    fn a_resolved_name_lives_for_its_ttl_within_the_books_bounds() {
        use gatehouse_inspectors::identify::resolved::ResolvedLimits;
        let limits = ContextLimits {
            resolved: ResolvedLimits {
                min_ttl: 0.0,
                ..ResolvedLimits::default()
            },
            ..ContextLimits::default()
        };
        let (book, cat) = (AddressBook::new(limits), catalog());
        let a: IpAddr = "149.154.167.51".parse().unwrap();
        book.learn_resolved(&cat, a, "web.telegram.org", 0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(book.name_of(a), None, "a zero TTL is over at once");
        book.learn_resolved(&cat, a, "web.telegram.org", 300);
        assert_eq!(book.name_of(a).as_deref(), Some("web.telegram.org"));
        // Another app's name for the same address: shared, no attribution.
        book.learn_resolved(&cat, a, "discord.com", 300);
        assert_eq!(book.name_of(a), None);
    }

    #[test]
    fn signalling_is_remembered_per_client_and_server() {
        let book = AddressBook::default();
        let (c, s): (IpAddr, IpAddr) = ("10.8.0.5".parse().unwrap(), "1.2.3.4".parse().unwrap());
        book.learn_app(c, s, "whatsapp");
        assert_eq!(book.signalled_to(c, s), vec!["whatsapp".to_string()]);
        assert!(book.signalled_to("10.8.0.6".parse().unwrap(), s).is_empty());
    }
}
