//! The onboarding page: every platform's download and install-and-trust
//! steps, the visitor's own platform (guessed from its User-Agent) first,
//! and the trust check. Everything taken from configuration or the
//! certificate is HTML-escaped.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

/// The platforms the page has steps for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// iPhone, iPad: configuration profile.
    Ios,
    /// macOS: configuration profile.
    MacOs,
    /// Android: DER certificate.
    Android,
    /// Windows: DER certificate.
    Windows,
    /// Firefox on a desktop (its own certificate store): PEM.
    Firefox,
    /// Linux: PEM.
    Linux,
}

impl Platform {
    /// Every platform, in the page's default order.
    pub const ALL: [Platform; 6] = [
        Self::Ios,
        Self::MacOs,
        Self::Android,
        Self::Windows,
        Self::Linux,
        Self::Firefox,
    ];

    /// Stable id (the section's `id` and `data-platform`).
    pub fn id(self) -> &'static str {
        match self {
            Self::Ios => "ios",
            Self::MacOs => "macos",
            Self::Android => "android",
            Self::Windows => "windows",
            Self::Firefox => "firefox",
            Self::Linux => "linux",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Ios => "iPhone and iPad (iOS, iPadOS)",
            Self::MacOs => "Mac (macOS)",
            Self::Android => "Android",
            Self::Windows => "Windows",
            Self::Firefox => "Firefox (its own certificate store)",
            Self::Linux => "Linux",
        }
    }

    /// The download path and what it is called on the page.
    fn download(self) -> (&'static str, &'static str) {
        match self {
            Self::Ios | Self::MacOs => {
                ("/ca.mobileconfig", "configuration profile (.mobileconfig)")
            }
            Self::Android | Self::Windows => ("/ca.cer", "certificate (.cer, DER)"),
            Self::Firefox | Self::Linux => ("/ca.pem", "certificate (.pem)"),
        }
    }

    /// Install-and-trust steps; `ca` is the (escaped) CA name.
    fn steps(self, ca: &str) -> Vec<String> {
        let v = |s: &[&str]| s.iter().map(|s| s.replace("{ca}", ca)).collect();
        match self {
            Self::Ios => v(&[
                "Open this page in Safari and tap the download link; allow the profile to download.",
                "Settings → General → VPN &amp; Device Management → the downloaded profile → Install.",
                "Settings → General → About → Certificate Trust Settings → turn on full trust for <b>{ca}</b>. Without this step the profile is installed but not trusted.",
            ]),
            Self::MacOs => v(&[
                "Download the profile and open it.",
                "System Settings → Privacy &amp; Security → Profiles (or General → Device Management) → the profile → Install; enter your password.",
                "Check in Keychain Access → System → Certificates that <b>{ca}</b> shows “This certificate is marked as trusted for all users”.",
            ]),
            Self::Android => v(&[
                "Download the certificate.",
                "Settings → Security → More security settings → Encryption &amp; credentials → Install a certificate → CA certificate → choose the downloaded file (the wording differs between makers).",
                "Check under Trusted credentials → User that <b>{ca}</b> is listed.",
                "<b>Caveat:</b> apps targeting Android 7 (API level 24) or later ignore user-installed CAs unless they opt in; their traffic cannot be read and is recorded as opaque (pinned). Browsers such as Chrome trust the CA.",
            ]),
            Self::Windows => v(&[
                "Download the certificate and open it → Install Certificate.",
                "Store location: Local Machine → Place all certificates in the following store → Trusted Root Certification Authorities → Finish. (Or, as administrator: <code>certutil -addstore -f Root gatehouse-ca.cer</code>.)",
                "Edge and Chrome use the Windows store; Firefox: see its own section.",
            ]),
            Self::Linux => v(&[
                "Download the certificate.",
                "Debian, Ubuntu: <code>sudo cp gatehouse-ca.pem /usr/local/share/ca-certificates/gatehouse-ca.crt &amp;&amp; sudo update-ca-certificates</code>. Fedora, RHEL: <code>sudo trust anchor gatehouse-ca.pem</code>.",
                "Chrome and Chromium on Linux read their own NSS store: <code>certutil -d sql:$HOME/.pki/nssdb -A -t \"C,,\" -n gatehouse -i gatehouse-ca.pem</code> (package libnss3-tools), then restart the browser.",
            ]),
            Self::Firefox => v(&[
                "Download the certificate.",
                "Settings → Privacy &amp; Security → Certificates → View Certificates → Authorities → Import → the downloaded file.",
                "Tick “Trust this CA to identify websites” → OK.",
            ]),
        }
    }
}

/// Guesses the visitor's platform from its User-Agent; `None` when unsure.
pub fn detect(user_agent: &str) -> Option<Platform> {
    let ua = user_agent;
    if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iPod") {
        return Some(Platform::Ios);
    }
    if ua.contains("Android") {
        return Some(Platform::Android);
    }
    if ua.contains("Firefox/") {
        return Some(Platform::Firefox);
    }
    if ua.contains("Windows") {
        return Some(Platform::Windows);
    }
    if ua.contains("Macintosh") || ua.contains("Mac OS X") {
        return Some(Platform::MacOs);
    }
    if ua.contains("Linux") || ua.contains("X11") || ua.contains("CrOS") {
        return Some(Platform::Linux);
    }
    None
}

/// What the page shows besides the steps.
pub struct PageFacts<'a> {
    /// Who runs the gateway (`ca.organization`, else the certificate's O).
    pub organization: Option<&'a str>,
    /// The CA's common name.
    pub ca_name: &'a str,
    /// SHA-256 fingerprint of the CA certificate, for checking by eye.
    pub fingerprint: &'a str,
    /// `https://host:port/trust-check.svg`, when a trust check is possible.
    pub trust_url: Option<String>,
}

/// The page for a visitor on `platform`.
pub fn render(facts: &PageFacts<'_>, platform: Option<Platform>) -> String {
    let org = facts.organization.map(|o| text(o).to_string());
    let ca = text(facts.ca_name).to_string();
    let who = match &org {
        Some(o) => format!("{o} inspects"),
        None => "Your organisation inspects".into(),
    };
    let mut order: Vec<Platform> = platform.into_iter().collect();
    order.extend(Platform::ALL.iter().filter(|p| Some(**p) != platform));

    let mut sections = String::new();
    for p in order {
        let (href, what) = p.download();
        let mine = Some(p) == platform;
        sections.push_str(&format!(
            "<section id=\"{id}\" data-platform=\"{id}\"{cls}>\n<h2>{title}{you}</h2>\n\
             <p><a class=\"download\" href=\"{href}\" download>Download the {what}</a></p>\n<ol>\n",
            id = p.id(),
            cls = if mine { " class=\"yours\"" } else { "" },
            title = p.title(),
            you = if mine { " — this device" } else { "" },
        ));
        for s in p.steps(&ca) {
            sections.push_str(&format!("<li>{s}</li>\n"));
        }
        sections.push_str("</ol>\n</section>\n");
    }

    let trust = match &facts.trust_url {
        Some(url) => format!(
            "<p id=\"trust-status\" class=\"checking\">Checking whether this device trusts the CA…</p>\n\
             <img id=\"trust-probe\" alt=\"\" width=\"1\" height=\"1\" src=\"{src}\">\n\
             <script>\n\
             (function () {{\n\
               var s = document.getElementById('trust-status');\n\
               var img = document.getElementById('trust-probe');\n\
               function set(ok) {{\n\
                 s.className = ok ? 'trusted' : 'untrusted';\n\
                 s.textContent = ok\n\
                   ? 'Trusted: this device accepts the gateway\\u2019s CA.'\n\
                   : 'Not trusted yet: install the certificate and trust it (steps below), then reload this page.';\n\
               }}\n\
               if (img.complete && img.naturalWidth > 0) {{ set(true); return; }}\n\
               img.onload = function () {{ set(true); }};\n\
               img.onerror = function () {{ set(false); }};\n\
             }})();\n\
             </script>\n",
            src = attr(url)
        ),
        None => "<p id=\"trust-status\" class=\"unavailable\">No trust check here \
                 (onboarding.host is not configured).</p>\n"
            .into(),
    };

    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Install the {ca} certificate</title>\n<style>\n\
         body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 1rem auto; padding: 0 1rem; line-height: 1.45; }}\n\
         section {{ border: 1px solid #ccc; border-radius: 6px; padding: 0 1rem; margin: 1rem 0; }}\n\
         section.yours {{ border: 2px solid #1a5fb4; }}\n\
         .trusted {{ background: #2ec27e; color: #fff; padding: .6rem; border-radius: 6px; }}\n\
         .untrusted {{ background: #c01c28; color: #fff; padding: .6rem; border-radius: 6px; }}\n\
         .checking, .unavailable {{ background: #deddda; padding: .6rem; border-radius: 6px; }}\n\
         code {{ word-break: break-all; }}\n\
         </style>\n</head>\n<body>\n\
         <h1>Install the {ca} certificate</h1>\n\
         <p>{who} encrypted (TLS) traffic on this network with a security gateway for data-loss \
         prevention. Your device must trust the gateway's certificate authority, <b>{ca}</b>; \
         until it does, secure sites fail with certificate errors.</p>\n\
         <p>SHA-256 fingerprint, to compare with what your device shows:<br><code id=\"fingerprint\">{fp}</code></p>\n\
         {trust}\
         <p>Formats: <a href=\"/ca.mobileconfig\">.mobileconfig</a> (iOS, macOS) · \
         <a href=\"/ca.cer\">.cer</a> (Android, Windows) · <a href=\"/ca.pem\">.pem</a> (Linux, Firefox) · \
         <a href=\"/proxy.pac\">proxy.pac</a> (automatic proxy configuration)</p>\n\
         {sections}\
         </body>\n</html>\n",
        fp = text(facts.fingerprint),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_pick_their_platform() {
        let cases = [
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Version/17.5 Mobile/15E148 Safari/604.1", Some(Platform::Ios)),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15", Some(Platform::MacOs)),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36", Some(Platform::Android)),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36", Some(Platform::Windows)),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", Some(Platform::Firefox)),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36", Some(Platform::Linux)),
            ("curl/8.5.0", None),
        ];
        for (ua, want) in cases {
            assert_eq!(detect(ua), want, "{ua}");
        }
    }

    #[test]
    fn configured_text_is_escaped() {
        let facts = PageFacts {
            organization: Some("<script>alert(1)</script>"),
            ca_name: "A & B \"CA\"",
            fingerprint: "AB:CD",
            trust_url: Some("https://x\"onerror=\"alert(1)/".into()),
        };
        let html = render(&facts, None);
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("A &amp; B"));
        assert!(!html.contains("x\"onerror"), "{html}");
        for p in Platform::ALL {
            assert!(html.contains(&format!("id=\"{}\"", p.id())), "{p:?}");
        }
    }
}
