//! Network namespaces for transparent-mode tests: a client, the gateway
//! (as the client's router, with an nftables redirect) and a server.
//! Addresses live only inside these namespaces; all are removed on drop.
#![allow(dead_code)]

use std::process::Command;

pub struct Netns {
    pub client: String,
    pub gateway: String,
    pub server: String,
}

/// Client side of the client↔gateway link.
pub const CLIENT_V4: &str = "10.233.0.2";
pub const CLIENT_V6: &str = "fd00:233::2";
/// The server's addresses (what clients dial).
pub const SERVER_V4: &str = "10.233.1.10";
pub const SERVER_V6: &str = "fd00:233:1::10";

/// Runs `cmd` with `sh -c`; panics with its stderr when it fails.
pub fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The path of a script in `tests/py`.
pub fn py(script: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script)
        .display()
        .to_string()
}

impl Netns {
    /// The TPROXY rules and policy routing of the README's QUIC and DNS
    /// sections, in the gateway's namespace: UDP to `dport` from the
    /// client's link goes to the listener on `to_port` (IPv4 and IPv6).
    /// Callable once per port; the routing for the mark is set up once.
    pub fn tproxy_udp(&self, tag: &str, dport: u16, to_port: u16) {
        let g = &self.gateway;
        sh(&format!(
            "ip netns exec {g} nft -f - <<'NFT'\n\
             table inet gatehouse_udp_{dport} {{\n\
               chain prerouting {{\n\
                 type filter hook prerouting priority mangle; policy accept;\n\
                 iifname \"g0{tag}\" meta l4proto udp socket transparent 1 meta mark set 1 accept\n\
                 iifname \"g0{tag}\" udp dport {dport} tproxy to :{to_port} meta mark set 1 accept\n\
               }}\n\
             }}\n\
             NFT"
        ));
        sh(&format!(
            "ip -n {g} rule show | grep -q 'fwmark 0x1 lookup 100' || {{ \
             ip -n {g} rule add fwmark 1 lookup 100 && ip -n {g} route add local 0.0.0.0/0 dev lo table 100 && \
             ip -n {g} -6 rule add fwmark 1 lookup 100 && ip -n {g} -6 route add local ::/0 dev lo table 100; }}"
        ));
    }

    /// Builds the three namespaces; `redirect_port` is where the gateway's
    /// transparent listener is. Needs root (the test command runs as root).
    pub fn setup(tag: &str, redirect_port: u16) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "transparent-mode tests need root to create network namespaces: run ./scripts/test.sh as root"
        );
        // Namespace names are global: the process id keeps two test runs
        // on one machine (CI and a developer, two worktrees) apart.
        let pid = std::process::id();
        let n = Self {
            client: format!("ghc{tag}-{pid}"),
            gateway: format!("ghg{tag}-{pid}"),
            server: format!("ghs{tag}-{pid}"),
        };
        remove_stale(tag);
        n.teardown();
        let (c, g, s) = (&n.client, &n.gateway, &n.server);
        for ns in [c, g, s] {
            sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
        }
        sh(&format!(
            "ip link add c0{tag} netns {c} type veth peer name g0{tag} netns {g}"
        ));
        sh(&format!(
            "ip link add s0{tag} netns {s} type veth peer name g1{tag} netns {g}"
        ));
        sh(&format!(
            "ip -n {c} addr add 10.233.0.2/24 dev c0{tag} && ip -n {c} addr add fd00:233::2/64 dev c0{tag} nodad && \
             ip -n {c} link set c0{tag} up && ip -n {c} route add default via 10.233.0.1 && \
             ip -n {c} -6 route add default via fd00:233::1"
        ));
        sh(&format!(
            "ip -n {s} addr add 10.233.1.10/24 dev s0{tag} && ip -n {s} addr add fd00:233:1::10/64 dev s0{tag} nodad && \
             ip -n {s} link set s0{tag} up && ip -n {s} route add default via 10.233.1.1 && \
             ip -n {s} -6 route add default via fd00:233:1::1"
        ));
        sh(&format!(
            "ip -n {g} addr add 10.233.0.1/24 dev g0{tag} && ip -n {g} addr add fd00:233::1/64 dev g0{tag} nodad && \
             ip -n {g} addr add 10.233.1.1/24 dev g1{tag} && ip -n {g} addr add fd00:233:1::1/64 dev g1{tag} nodad && \
             ip -n {g} link set g0{tag} up && ip -n {g} link set g1{tag} up && \
             ip netns exec {g} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1"
        ));
        // The redirect an operator puts on the VPN egress (see README).
        sh(&format!(
            "ip netns exec {g} nft -f - <<'NFT'\n\
             table inet gatehouse {{\n\
               chain prerouting {{\n\
                 type nat hook prerouting priority dstnat; policy accept;\n\
                 iifname \"g0{tag}\" tcp dport {{ 443, 5223, 5222, 1883 }} redirect to :{redirect_port}\n\
               }}\n\
             }}\n\
             NFT"
        ));
        n
    }

    /// `ip netns exec NS` prefix for a command.
    pub fn exec(ns: &str) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), ns.into()]
    }

    fn teardown(&self) {
        for ns in [&self.client, &self.gateway, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Namespaces of this tag left by a test process that is gone (killed
/// before its `Drop` ran).
fn remove_stale(tag: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = ["ghc", "ghg", "ghs"]
            .iter()
            .find_map(|p| name.strip_prefix(p)?.strip_prefix(tag)?.strip_prefix('-'))
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.teardown();
    }
}
