//! Classifying a capture's flows with what the capture itself says about
//! them: DNS answers seen earlier name the addresses later flows go to,
//! and an app's signalling just before a call names the call.

use std::net::IpAddr;

use super::Flow;
use crate::identify::catalog::{Catalog, Classification, FlowContext};
use crate::identify::context::{ClientContext, ContextLimits};
use crate::identify::ranges::Ranges;
use crate::identify::{Confidence, Protocol};

/// Classifies every flow (result in the order of `flows`), walking them in
/// time order so that each sees only what came before it.
pub fn classify(flows: &[Flow], catalog: &Catalog, ranges: &Ranges) -> Vec<Classification> {
    let mut order: Vec<usize> = (0..flows.len()).collect();
    // Flows without timestamps keep file order.
    order.sort_by(|&a, &b| {
        let t = |i: usize| flows[i].first_seen.unwrap_or(f64::MIN);
        t(a).total_cmp(&t(b))
    });
    let mut ctx = ClientContext::new(ContextLimits::default());
    let mut out: Vec<Option<Classification>> = vec![None; flows.len()];
    // DNS responses may land after later flows start; take each flow's
    // answers when its own turn comes, which is when its query was sent.
    for i in order {
        let f = &flows[i];
        let now = f.first_seen.unwrap_or(0.0);
        for (t, m) in &f.dns_responses {
            ctx.observe_dns(m, t.unwrap_or(now));
        }
        let server: IpAddr = f.server.ip();
        let resolved = ctx.resolved(server, now).map(str::to_owned);
        let signalled = ctx.signalled(f.client.ip(), now);
        let same_server = ctx.signalled_to(f.client.ip(), server, now);
        let flow_ctx = FlowContext {
            port: f.server.port(),
            server: Some(server),
            resolved: resolved.as_deref(),
            signalled: &signalled,
            signalled_same_server: &same_server,
            ranges: Some(ranges),
            ..FlowContext::default()
        };
        let c = catalog.classify_flow(&f.identification, &flow_ctx);
        let is_call = matches!(
            f.identification.protocol,
            Protocol::Stun
                | Protocol::Rtp
                | Protocol::Rtcp
                | Protocol::DiscordVoice
                | Protocol::Dns
        );
        if let (Some(app), false) = (&c.app, is_call) {
            if c.confidence >= Confidence::Medium {
                ctx.observe_app(f.client.ip(), server, app, now);
            }
        }
        out[i] = Some(c);
    }
    out.into_iter()
        .map(|c| c.expect("every flow was classified"))
        .collect()
}
