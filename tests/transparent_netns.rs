//! Transparent interception at a VPN-egress-like router: a client network
//! namespace routed through the gateway's namespace, where nftables
//! redirects :443 to the transparent listener; a real server in a third
//! namespace; curl as the client, over IPv4 and IPv6.

mod common;

use std::process::Command;

use common::netns::{Netns, SERVER_V4, SERVER_V6};
use common::pki::{LeafSpec, TestCa};
use common::Gatehouse;

#[test]
fn redirected_flows_are_intercepted_over_ipv4_and_ipv6() {
    let tag = format!("{}", std::process::id() % 100_000);
    let net = Netns::setup(&tag, 8443);

    // The real server: openssl s_server with a certificate from a test root.
    let root = TestCa::root("Egress Test Root");
    let leaf = root.leaf(&LeafSpec::new(&["svc.test"]));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    leaf.write_pem(dir.path(), "svc");
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.server,
            "openssl",
            "s_server",
            "-quiet",
            "-www",
        ])
        .args(["-accept", "443", "-cert", "svc.pem", "-key", "svc.key"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\ntransparent_listen = \"[::]:8443\"\n\
         allowed_clients = [\"10.233.0.0/24\", \"fd00:233::/64\"]\n\
         allowed_destinations = [\"10.233.1.0/24\", \"fd00:233:1::/64\"]\n\
         [upstream]\nextra_roots = [\"{}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        dir.path().join("root.pem").display()
    );
    let gw = Gatehouse::start_wrapped(
        tempfile::tempdir().unwrap(),
        &config,
        &Netns::exec(&net.gateway),
        &[],
    );

    for target in [SERVER_V4.to_string(), format!("[{SERVER_V6}]")] {
        let mut ok = false;
        let mut last = String::new();
        // The server may need a moment to bind in its namespace.
        for _ in 0..50 {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &net.client,
                    "curl",
                    "-sS",
                    "--max-time",
                    "10",
                ])
                .args(["--cacert", gw.ca_cert.to_str().unwrap()])
                .args(["--resolve", &format!("svc.test:443:{target}")])
                .arg("https://svc.test/")
                .output()
                .unwrap();
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                // curl trusted only the gateway's CA: the leaf was minted by it.
                assert!(last.contains("s_server"), "{last}");
                ok = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            ok,
            "curl to {target} through the transparent gateway failed: {last}\n{}",
            gw.log()
        );
    }
    // Every flow is in the event journal, found by the investigation CLI.
    let (code, out, err) =
        common::gatehouse(gw.dir.path(), &["events", "search", "--json", "svc.test"]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let intercepted: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| {
            let c = e.get("connection").unwrap_or(e);
            c.to_string().contains("\"mode\":\"transparent\"")
                && c.to_string().contains("\"decision\":\"intercept\"")
        })
        .collect();
    assert!(
        intercepted.len() >= 2,
        "one per address family expected: {out}\n{}",
        gw.log()
    );
    let _ = server.kill();
    let _ = server.wait();
    drop(gw);
    drop(net);
}
