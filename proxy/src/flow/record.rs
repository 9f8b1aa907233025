//! Record: the flow becomes its `connection` event, once, here; and the
//! flow's other events are stamped from the same context.

use crate::events::{now_ms, ConnectionEvent, Event, EventSink};

use super::context::{Decision, Flow};

impl Flow {
    /// Emits a `policy` event of this flow.
    pub fn policy_event(&self, events: &dyn EventSink, kind: &str, action: &str, reason: &str) {
        events.emit(Event::Policy(self.stamp().policy(kind, action, reason)));
    }

    /// The end of the flow: its `connection` event (and, for an opaque
    /// tunnel relayed unread, its `opaque_tunnel` event). Consumes the
    /// flow, so it happens exactly once; the admission slot is freed after.
    pub fn record(self, events: &dyn EventSink) {
        let ended_ms = now_ms();
        let duration_ms = ended_ms.saturating_sub(self.started_ms);
        let host = self.host_name();
        {
            let _in = self.span.enter();
            tracing::debug!(
                decision = self.decision.as_str(),
                close = self.close.as_str(),
                side = self.side.or(self.close.side()).map(|s| s.to_string()),
                up = self.bytes_up,
                down = self.bytes_down,
                duration_ms,
                "flow ended"
            );
        }
        if self.seen.class.as_deref() == Some("opaque") && self.decision == Decision::Passthrough {
            let mut o = self.stamp().opaque(
                self.seen.protocol.as_deref().unwrap_or_default(),
                "passthrough",
            );
            o.bytes_up = self.bytes_up;
            o.bytes_down = self.bytes_down;
            o.reason = self.seen.class_reasons.join(",");
            o.evidence = self.seen.evidence.join("; ");
            o.confidence = if self.seen.app.is_some() || self.seen.attributed_app.is_some() {
                "high"
            } else {
                "low"
            }
            .into();
            o.duration_ms = duration_ms;
            events.emit(Event::OpaqueTunnel(o));
        }
        let Flow {
            id,
            mode,
            client,
            identity,
            target,
            server_addr,
            seen,
            tls,
            decision,
            reason,
            flagged,
            close,
            bytes_up,
            bytes_down,
            started_ms,
            transport,
            ..
        } = self;
        // The connection event's id is the flow id: findings of whole
        // bodies (no message of their own) name it.
        events.emit_as(
            id,
            Event::Connection(ConnectionEvent {
                client,
                destination: target.as_ref().map(|t| t.host_port()),
                decision: decision.as_str().into(),
                reason,
                bytes_up,
                bytes_down,
                flow_id: id,
                user: identity.user.unwrap_or_default(),
                device: identity.device.unwrap_or_default(),
                host,
                app: seen.app.or(seen.attributed_app),
                protocol: seen.protocol,
                duration_ms,
                mode: mode.as_str().into(),
                server_addr,
                sni: seen.sni,
                alpn: tls.alpn,
                class: seen.class,
                class_reasons: seen.class_reasons,
                evidence: seen.evidence,
                ja4: seen.ja4,
                ech: seen.ech,
                client_tls: tls.client,
                upstream_tls: tls.upstream,
                upstream_cert_sha256: tls.upstream_cert_sha256,
                verification: tls.verification,
                flagged,
                started_ms,
                ended_ms,
                close_reason: close.as_str().into(),
                transport: transport.into(),
            }),
        );
    }
}
