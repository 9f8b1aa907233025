//! DNS at a VPN-egress-like router: a client network namespace routed
//! through the gateway's namespace, where nftables TPROXY hands UDP 53 to
//! `[dns] listen`, and a server namespace running a real resolver
//! (dnsmasq) with A, AAAA, CNAME and HTTPS records. Clients: dnspython and
//! dig, over IPv4 and IPv6.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{py, sh, Netns, SERVER_V4, SERVER_V6};
use common::Gatehouse;
use serde_json::Value;

/// Where the test's app names resolve (extra addresses of the server).
const TG_V4: &str = "10.233.1.20";
const TG_V6: &str = "fd00:233:1::20";
const WA_V4: &str = "10.233.1.21";
const WA_V6: &str = "fd00:233:1::21";
/// An address that is not an allowed resolver.
const OTHER_V4: &str = "10.233.1.30";
/// An allowed resolver that answers every query with bytes that are not DNS.
const BROKEN_V4: &str = "10.233.1.31";

/// HTTPS RDATA: priority 1, target ".", alpn h3,h2, ech (an
/// ECHConfigList of one 4-byte entry).
const HTTPS_RDATA: &str = "00010000010006026833026832000500060004fe0d0000";

struct Resolver(Child, Child);

impl Drop for Resolver {
    fn drop(&mut self) {
        for c in [&mut self.0, &mut self.1] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Egress {
    // Dropped in this order: the gateway, the resolver, then the namespaces.
    gw: Gatehouse,
    _resolver: Resolver,
    net: Netns,
}

fn egress(tag: &str) -> Egress {
    egress_with(tag, "")
}

/// As [`egress`], with more `[dns]` keys.
fn egress_with(tag: &str, dns_extra: &str) -> Egress {
    let net = Netns::setup(tag, 8443);
    net.tproxy_udp(tag, 53, 8053);
    let s = &net.server;
    sh(&format!(
        "ip -n {s} addr add {TG_V4}/24 dev s0{tag} && ip -n {s} addr add {WA_V4}/24 dev s0{tag} && \
         ip -n {s} addr add {TG_V6}/64 dev s0{tag} nodad && ip -n {s} addr add {WA_V6}/64 dev s0{tag} nodad && \
         ip -n {s} addr add {BROKEN_V4}/24 dev s0{tag}"
    ));
    // Answers with the query's id and flags, then bytes that are no DNS.
    let broken = Command::new("ip")
        .args(["netns", "exec", s, "python3", "-c"])
        .arg(format!(
            "import socket\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind(('{BROKEN_V4}',53))\n\
             while True:\n\
             \x20d,a=s.recvfrom(4096)\n\
             \x20s.sendto(d[:2]+b'\\x81\\x80\\x00\\x01 these are not records at all',a)\n"
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let resolver = Command::new("ip")
        .args(["netns", "exec", s, "dnsmasq", "-k", "-C", "/dev/null"])
        .args([
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
        ])
        .args(["--pid-file=", "--port=53", "--local-ttl=300"])
        .arg(format!("--listen-address={SERVER_V4}"))
        .arg(format!("--listen-address={SERVER_V6}"))
        .arg(format!("--host-record=web.telegram.org,{TG_V4},{TG_V6}"))
        .arg(format!("--host-record=wa-edge.test,{WA_V4},{WA_V6}"))
        .arg("--cname=web.whatsapp.com,wa-edge.test")
        .arg(format!("--dns-rr=blocked.test,65,{HTTPS_RDATA}"))
        .arg(format!("--dns-rr=pass.test,65,{HTTPS_RDATA}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (Debian dnsmasq-base) runs");
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\ntransparent_listen = \"[::]:8443\"\n\
         allowed_clients = [\"10.233.0.0/24\", \"fd00:233::/64\"]\n\
         allowed_destinations = [\"{TG_V4}/31\", \"{TG_V6}/127\"]\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [quic]\nlisten = \"[::]:8443\"\nstrip_alt_svc = true\n\
         [dns]\nlisten = \"[::]:8053\"\nresolvers = [\"{SERVER_V4}\", \"{SERVER_V6}\", \"{BROKEN_V4}\"]\n\
         query_timeout = \"2s\"\n{dns_extra}\n\
         [[intercept.rules]]\nhosts = [\"pass.test\"]\naction = \"intercept\"\nquic = \"pass\"\n"
    );
    let gw = Gatehouse::start_wrapped(
        tempfile::tempdir().unwrap(),
        &config,
        &Netns::exec(&net.gateway),
        &[],
    );
    Egress {
        gw,
        _resolver: Resolver(resolver, broken),
        net,
    }
}

/// One dnspython query from namespace `ns`; its JSON verdict.
fn query(ns: &str, server: &str, name: &str, rtype: &str) -> Value {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", &py("dns_query.py")])
        .args([server, name, rtype])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        panic!(
            "dns_query.py said {line:?} ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A query that must be answered, retried while dnsmasq starts.
fn answered(e: &Egress, ns: &str, server: &str, name: &str, rtype: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..20 {
        last = query(ns, server, name, rtype);
        if last["ok"] == true {
            return last;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "no answer for {name} {rtype} from {server} in {ns}: {last}\n{}",
        e.gw.log()
    );
}

/// Connection events whose host contains `term`.
fn connections(gw: &Gatehouse, term: &str) -> Vec<Value> {
    let (code, out, err) = common::gatehouse(
        gw.dir.path(),
        &[
            "events",
            "search",
            "--json",
            "--limit",
            "0",
            "--type",
            "connection",
            term,
        ],
    );
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| e.get("connection").cloned().unwrap_or(e))
        .filter(|c| c.get("transport").is_some())
        .collect()
}

fn wait_connection(gw: &Gatehouse, term: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = connections(gw, term);
        if let Some(c) = all.iter().find(|c| pred(c)) {
            return c.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no matching connection event for {term}: {all:#?}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `[addr]:port` for IPv6, `addr:port` for IPv4.
fn host_port(addr: &str, port: u16) -> String {
    SocketAddr::new(addr.parse().unwrap(), port).to_string()
}

/// A TCP connection from the client namespace that names nothing: a few
/// bytes no parser recognises, then close.
fn tcp_without_a_name(net: &Netns, addr: &str) {
    let script = format!(
        "import socket,time\n\
         s=socket.create_connection(('{addr}',443),timeout=5)\n\
         s.sendall(b'\\x00\\x07opaque\\x00\\x01')\n\
         time.sleep(0.3)\n\
         s.close()\n"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &net.client, "python3", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "TCP to {addr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends datagrams from one fresh socket in the client namespace.
fn send_from_client(net: &Netns, to: SocketAddr, datagrams: Vec<Vec<u8>>) {
    let ns_path = format!("/var/run/netns/{}", net.client);
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&ns_path).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let s = std::net::UdpSocket::bind(bind).unwrap();
        for d in datagrams {
            s.send_to(&d, to).unwrap();
        }
    })
    .join()
    .unwrap();
}

#[test]
fn answers_are_relayed_learnt_and_rewritten_by_quic_policy_over_ipv4_and_ipv6() {
    let tag = format!("d{}", std::process::id() % 100_000);
    let e = egress(&tag);
    let (c, g) = (e.net.client.clone(), e.net.gateway.clone());
    for (server, tg, wa, rtype) in [
        (SERVER_V4, TG_V4, WA_V4, "A"),
        (SERVER_V6, TG_V6, WA_V6, "AAAA"),
    ] {
        let resolver = host_port(server, 53);
        // Through the gateway, the answer is what the resolver says
        // (asked directly from the gateway's namespace, not redirected).
        let via = answered(&e, &c, server, "web.telegram.org", rtype);
        let direct = answered(&e, &g, server, "web.telegram.org", rtype);
        assert_eq!(via["answer"], direct["answer"], "{via} vs {direct}");
        assert!(via["answer"].to_string().contains(tg), "{via}");
        // For the record (not a claim): one query's round trip both ways.
        let (v, d) = (
            query(&c, server, "web.telegram.org", rtype),
            query(&g, server, "web.telegram.org", rtype),
        );
        eprintln!(
            "{rtype} web.telegram.org: {:.2} ms through the gateway, {:.2} ms direct",
            v["elapsed"].as_f64().unwrap_or(0.0) * 1e3,
            d["elapsed"].as_f64().unwrap_or(0.0) * 1e3
        );
        let ev = wait_connection(&e.gw, "web.telegram.org", |c| {
            c["transport"] == "udp" && c["destination"] == resolver.as_str()
        });
        assert_eq!(ev["protocol"], "dns", "{ev}");
        assert_eq!(ev["app"], "telegram", "{ev}");
        assert_eq!(ev["decision"], "passthrough", "{ev}");
        assert_eq!(ev["mode"], "transparent", "{ev}");
        assert_eq!(ev["server_addr"], resolver.as_str(), "{ev}");
        assert!(ev["bytes_down"].as_u64().unwrap() > 0, "{ev}");

        // A CNAME chain: the address at its end stands for the name asked.
        let via = answered(&e, &c, server, "web.whatsapp.com", rtype);
        let direct = answered(&e, &g, server, "web.whatsapp.com", rtype);
        assert_eq!(via["answer"], direct["answer"]);
        let text = via["answer"].to_string();
        assert!(text.contains("wa-edge.test") && text.contains(wa), "{via}");
        let ev = wait_connection(&e.gw, "web.whatsapp.com", |c| {
            c["transport"] == "udp" && c["destination"] == resolver.as_str()
        });
        assert_eq!(ev["app"], "whatsapp", "{ev}");

        // dig, a second client.
        let out = Command::new("ip")
            .args(["netns", "exec", &c, "dig", &format!("@{server}")])
            .args(["+time=3", "+tries=2", "+short", "web.telegram.org", rtype])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(tg), "dig said {said:?}\n{}", e.gw.log());

        // A later TCP flow to those addresses that names nothing takes the
        // app of the name the answer gave them.
        for (addr, app, name) in [
            (tg, "telegram", "web.telegram.org"),
            (wa, "whatsapp", "web.whatsapp.com"),
        ] {
            tcp_without_a_name(&e.net, addr);
            let dst = host_port(addr, 443);
            let ev = wait_connection(&e.gw, addr, |c| {
                c["transport"] == "tcp" && c["destination"] == dst.as_str()
            });
            assert_eq!(ev["app"], app, "{ev}");
            let evidence = ev["evidence"].to_string();
            assert!(evidence.contains(name), "{ev}");
        }

        // HTTPS records: h3 goes where QUIC is blocked (the default), stays
        // where a rule passes it; ech goes either way (dns.strip_ech).
        let direct = answered(&e, &g, server, "blocked.test", "HTTPS");
        assert_eq!(
            direct["https"][0]["alpn"],
            serde_json::json!(["h3", "h2"]),
            "{direct}"
        );
        assert_eq!(direct["https"][0]["ech"], true, "{direct}");
        let blocked = answered(&e, &c, server, "blocked.test", "HTTPS");
        assert_eq!(
            blocked["https"][0]["alpn"],
            serde_json::json!(["h2"]),
            "{blocked}"
        );
        assert_eq!(blocked["https"][0]["ech"], false, "{blocked}");
        let passed = answered(&e, &c, server, "pass.test", "HTTPS");
        assert_eq!(
            passed["https"][0]["alpn"],
            serde_json::json!(["h3", "h2"]),
            "{passed}"
        );
        assert_eq!(passed["https"][0]["ech"], false, "{passed}");
        let ev = wait_connection(&e.gw, "blocked.test", |c| {
            c["transport"] == "udp" && c["destination"] == resolver.as_str()
        });
        assert!(ev["evidence"].to_string().contains("without h3"), "{ev}");
    }
}

#[test]
fn junk_on_udp_53_is_dropped_with_an_event_and_resolvers_must_be_allowed() {
    let tag = format!("j{}", std::process::id() % 100_000);
    let mut e = egress(&tag);
    let c = e.net.client.clone();
    answered(&e, &c, SERVER_V4, "web.telegram.org", "A");
    for server in [SERVER_V4, SERVER_V6] {
        let to = SocketAddr::new(server.parse().unwrap(), 53);
        // A tunnel-like payload and a DNS *response* sent as if a query.
        let mut response = gatehouse_inspectors::identify::dns::build_query(7, "x.test", 1);
        response[2] |= 0x80;
        send_from_client(
            &e.net,
            to,
            vec![b"\x45\x00\x00\x54 not dns at all, a tunnel".to_vec()],
        );
        send_from_client(&e.net, to, vec![response]);
        let dst = to.to_string();
        let ev = wait_connection(&e.gw, server, |c| {
            c["transport"] == "udp" && c["destination"] == dst.as_str() && c["decision"] == "block"
        });
        assert_eq!(ev["flagged"], true, "{ev}");
        assert!(ev["reason"].as_str().unwrap().contains("dropped"), "{ev}");
        let all = connections(&e.gw, server);
        let blocked = all
            .iter()
            .filter(|c| c["transport"] == "udp" && c["decision"] == "block")
            .count();
        assert!(blocked >= 1, "{all:#?}");
    }
    // The policy events of the drops.
    let (code, out, err) = common::gatehouse(
        e.gw.dir.path(),
        &[
            "events", "search", "--json", "--limit", "0", "--type", "policy",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("unparsed") && out.contains("not a DNS query"),
        "{out}"
    );
    assert!(
        e.gw.child.try_wait().unwrap().is_none(),
        "the gateway died:\n{}",
        e.gw.log()
    );
    // A resolver in a private range that is not in dns.resolvers: refused.
    let r = query(&c, OTHER_V4, "web.telegram.org", "A");
    assert_eq!(r["ok"], false, "{r}");
    let ev = wait_connection(&e.gw, "web.telegram.org", |c| {
        c["destination"] == host_port(OTHER_V4, 53).as_str()
    });
    assert_eq!(ev["decision"], "block", "{ev}");
    assert!(
        ev["reason"].as_str().unwrap().contains("dns.resolvers"),
        "{ev}"
    );
    // An answer that cannot be read is dropped, never relayed unread.
    let raw = format!(
        "import socket\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.settimeout(2.5)\n\
         s.sendto(bytes.fromhex('{}'),('{BROKEN_V4}',53))\n\
         try:\n\
         \x20print(s.recv(4096).hex())\n\
         except socket.timeout:\n\
         \x20print('nothing')\n",
        gatehouse_inspectors::identify::dns::build_query(0x99, "web.telegram.org", 1)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &c, "python3", "-c", &raw])
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        got.trim(),
        "nothing",
        "an unreadable answer reached the client: {got}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = wait_connection(&e.gw, "web.telegram.org", |c| {
        c["destination"] == host_port(BROKEN_V4, 53).as_str()
    });
    assert_eq!(ev["decision"], "block", "{ev}");
    assert_eq!(ev["flagged"], true, "{ev}");
    assert!(
        ev["reason"].as_str().unwrap().contains("not relayed"),
        "{ev}"
    );
    // Still serving.
    let r = answered(&e, &c, SERVER_V6, "web.telegram.org", "AAAA");
    assert!(r["answer"].to_string().contains(TG_V6), "{r}");
}

#[test]
fn a_flood_of_junk_on_udp_53_leaves_the_gateway_up_bounded_and_answering() {
    let tag = format!("k{}", std::process::id() % 100_000);
    let mut e = egress(&tag);
    let c = e.net.client.clone();
    answered(&e, &c, SERVER_V4, "web.telegram.org", "A");
    let pid = e.gw.child.id();
    let rss_before = rss_kib(pid);
    let started = Instant::now();
    // The QUIC flood's junk (random datagrams, each from a fresh port),
    // sent to a resolver address instead.
    let out = Command::new("ip")
        .args(["netns", "exec", &c, "python3", &py("quic_flood.py")])
        .args([SERVER_V4, "53", "20000", "0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flood_secs = started.elapsed().as_secs_f64();
    assert!(
        e.gw.child.try_wait().unwrap().is_none(),
        "the gateway died under the flood:\n{}",
        e.gw.log()
    );
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB under the flood"
    );
    // Rate-limited: at most a burst plus the rate for its duration became
    // flows (one blocked event each), not 20,000.
    std::thread::sleep(Duration::from_secs(3));
    let blocked = connections(&e.gw, SERVER_V4)
        .into_iter()
        .filter(|c| c["transport"] == "udp" && c["decision"] == "block")
        .count() as f64;
    let bound = 100.0 + 50.0 * (flood_secs + 4.0);
    assert!(blocked <= bound, "{blocked} flows recorded (bound {bound})");
    assert!(blocked >= 1.0, "the flood's first flows are recorded");
    eprintln!("flood of 20000 junk datagrams in {flood_secs:.1} s: {blocked} blocked flows recorded, RSS {rss_before} -> {rss_after} KiB");
    // Still answering once the client's rate recovers.
    let r = answered(&e, &c, SERVER_V4, "web.whatsapp.com", "A");
    assert!(r["answer"].to_string().contains(WA_V4), "{r}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn dns_upstream_sends_every_query_to_the_corporate_resolver() {
    let tag = format!("u{}", std::process::id() % 100_000);
    let e = egress_with(&tag, &format!("upstream = \"{SERVER_V4}:53\""));
    let c = e.net.client.clone();
    // The client asks an address nothing listens on (and that is not an
    // allowed resolver): the corporate resolver answers, from the address
    // the client asked (dnspython accepts only that).
    let r = answered(&e, &c, OTHER_V4, "web.telegram.org", "A");
    assert!(r["answer"].to_string().contains(TG_V4), "{r}");
    let ev = wait_connection(&e.gw, "web.telegram.org", |c| {
        c["destination"] == host_port(OTHER_V4, 53).as_str()
    });
    assert_eq!(ev["decision"], "passthrough", "{ev}");
    assert_eq!(ev["server_addr"], host_port(SERVER_V4, 53).as_str(), "{ev}");
    assert_eq!(ev["app"], "telegram", "{ev}");
}
