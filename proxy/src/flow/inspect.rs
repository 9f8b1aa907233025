//! Inspect: open the flow's inspection hooks (message extraction and DLP,
//! see [`crate::inspect`]) with what the flow knows — id, who, host, app,
//! ALPN — and the relay settings every HTTP relay of a flow shares.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::relay::hooks::{AllowAll, FlowContext, FlowHooks};
use crate::relay::http::HttpRelay;
use crate::state::Shared;

use super::context::Flow;

/// The hooks of one flow, shared by its relays.
pub type Hooks = Arc<Mutex<Box<dyn FlowHooks>>>;

/// The flow as its hooks see it, and its hooks: the configured inspection
/// when `inspected`, else hooks that allow everything (a plain-HTTP request
/// policy passes through).
pub fn open(
    flow: &Flow,
    shared: &Shared,
    host: &str,
    inspected: bool,
) -> (Arc<FlowContext>, Hooks) {
    let ctx = Arc::new(FlowContext {
        id: flow.id,
        client: flow.client,
        user: flow.identity.user.clone(),
        device: flow.identity.device.clone(),
        host: host.to_string(),
        app: flow.seen.app.clone(),
        alpn: flow.tls.alpn.clone(),
    });
    let hooks: Box<dyn FlowHooks> = if inspected {
        shared.interceptor.open(&ctx)
    } else {
        Box::new(AllowAll)
    };
    (ctx, Arc::new(Mutex::new(hooks)))
}

/// The HTTP relay settings of a flow.
pub fn http_relay(shared: &Shared, ctx: &Arc<FlowContext>, hooks: &Hooks) -> HttpRelay {
    let proxy = &shared.config.proxy;
    HttpRelay {
        authority: Some(super::decide::authority_check(shared, None)),
        flow: ctx.clone(),
        hooks: hooks.clone(),
        window: shared.config.intercept.inspect_window,
        window_wait: Duration::from_millis(500),
        header_timeout: proxy.header_read_timeout,
        max_header_bytes: proxy.max_header_bytes,
        idle: proxy.idle_timeout,
        abort: shared.abort.clone(),
        tracker: tokio_util::task::TaskTracker::new(),
        requests: Arc::default(),
        strip_alt_svc: shared.config.strip_alt_svc(),
        doh: doh(shared, ctx),
    }
}

/// What DoH answers of this flow lose: `h3` where QUIC is blocked for the
/// name (when Alt-Svc is stripped too), `ech` unless `dns.strip_ech` is off.
fn doh(shared: &Shared, ctx: &Arc<FlowContext>) -> Option<crate::relay::doh::Doh> {
    let strip_h3 = shared.config.strip_alt_svc();
    let strip_ech = shared.config.dns.as_ref().is_none_or(|d| d.strip_ech);
    if !strip_h3 && !strip_ech {
        return None;
    }
    Some(crate::relay::doh::Doh {
        policy: Arc::new(QuicPolicy {
            on: strip_h3,
            shared: shared.clone(),
            identity: shared.identities.by_address(ctx.client.ip()),
            flow: ctx.clone(),
        }),
        strip_ech,
    })
}

/// The flow's QUIC policy, asked about the names of DoH answers, and its
/// events, where a refused answer is recorded.
struct QuicPolicy {
    on: bool,
    shared: Shared,
    identity: crate::policy::Identity,
    flow: Arc<FlowContext>,
}

impl crate::relay::doh::DohPolicy for QuicPolicy {
    fn refused(&self, why: &str) {
        let reason = format!("DNS-over-HTTPS answer not relayed: {why}");
        let e = self.flow.stamp().policy("doh_unreadable", "block", &reason);
        self.shared.events.emit(crate::events::Event::Policy(e));
    }

    fn h3_blocked(&self, name: &str) -> bool {
        let app = self.shared.catalog.lookup_host(name).map(|a| a.id.clone());
        self.on
            && self
                .shared
                .policy
                .decide_quic(Some(name), app.as_deref(), &self.identity)
                .action
                == crate::config::QuicAction::Block
    }
}

/// The HTTP relay settings of `flow`: as [`http_relay`], with the fronting
/// check also knowing the address the flow's connection goes to.
pub fn http_relay_of(
    flow: &Flow,
    shared: &Shared,
    ctx: &Arc<FlowContext>,
    hooks: &Hooks,
) -> HttpRelay {
    let address = flow
        .target
        .as_ref()
        .and_then(|t| t.host.parse::<std::net::IpAddr>().ok());
    HttpRelay {
        authority: Some(super::decide::authority_check(shared, address)),
        ..http_relay(shared, ctx, hooks)
    }
}

/// Tells the hooks the flow ended.
pub fn close(ctx: &FlowContext, hooks: &Hooks) {
    hooks.lock().expect("hooks lock").on_close(ctx);
}
