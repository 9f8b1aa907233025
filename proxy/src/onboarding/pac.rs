//! `/proxy.pac`: the proxy auto-config file for explicit-proxy devices.

/// The PAC text: `DIRECT` for each of `direct` (IPv4 CIDRs, `.domain`
/// suffixes, exact host names; validated at config load), `PROXY proxy`
/// for everything else. There is no `DIRECT` fallback after the proxy: a
/// device that cannot reach the gateway fails closed instead of going
/// around it. Every string is written as a JSON string literal, which is a
/// valid JavaScript literal whatever it holds.
pub fn render(direct: &[String], proxy: &str) -> String {
    let lit = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut tests = Vec::new();
    for d in direct {
        if let Some((net, mask)) = ipv4_net(d) {
            tests.push(format!("isInNet(host, {}, {})", lit(&net), lit(&mask)));
        } else if let Some(domain) = d.strip_prefix('.') {
            tests.push(format!(
                "dnsDomainIs(host, {}) || host == {}",
                lit(&format!(".{domain}")),
                lit(domain)
            ));
        } else {
            tests.push(format!("host == {}", lit(d)));
        }
    }
    let mut out = String::from(
        "// Gatehouse proxy auto-config: internal ranges go DIRECT, everything\n\
         // else through the gateway (no DIRECT fallback: fail closed).\n\
         function FindProxyForURL(url, host) {\n",
    );
    for t in tests {
        out.push_str(&format!("  if ({t}) return \"DIRECT\";\n"));
    }
    out.push_str(&format!(
        "  return {};\n}}\n",
        lit(&format!("PROXY {proxy}"))
    ));
    out
}

/// `10.0.0.0/8` → ("10.0.0.0", "255.0.0.0").
fn ipv4_net(s: &str) -> Option<(String, String)> {
    match s.parse::<ipnet::IpNet>().ok()? {
        ipnet::IpNet::V4(n) => Some((n.network().to_string(), n.netmask().to_string())),
        ipnet::IpNet::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_domains_and_hosts_go_direct_the_rest_to_the_proxy() {
        let pac = render(
            &[
                "10.0.0.0/8".into(),
                ".corp.example".into(),
                "intranet".into(),
            ],
            "gw.example:3128",
        );
        assert!(
            pac.contains(r#"isInNet(host, "10.0.0.0", "255.0.0.0")"#),
            "{pac}"
        );
        assert!(
            pac.contains(r#"dnsDomainIs(host, ".corp.example") || host == "corp.example""#),
            "{pac}"
        );
        assert!(pac.contains(r#"host == "intranet""#), "{pac}");
        assert!(pac.contains(r#"return "PROXY gw.example:3128";"#), "{pac}");
        assert!(!pac.contains("; DIRECT"), "{pac}");
    }

    #[test]
    fn strings_cannot_break_out_of_their_literal() {
        let pac = render(&["a\"); alert(1); (\"".into()], "x:1");
        assert!(pac.contains(r#"host == "a\"); alert(1); (\"""#), "{pac}");
    }
}
