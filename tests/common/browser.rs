//! A real headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, the `thirtyfour` crate): chromedriver on a free
//! loopback port, its own profile and HOME, and optionally a CA made
//! trusted in that HOME's NSS store ([`crate::chromium::trust_in_nss`]), as
//! a user would import it. The browser tests' shared parts are in
//! `chromium.rs`; this one drives the console without a proxy.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thirtyfour::prelude::*;

pub struct Browser {
    pub driver: WebDriver,
    chromedriver: Child,
    _home: tempfile::TempDir,
}

use crate::chromium::free_port;

impl Browser {
    /// Starts chromedriver and a headless Chromium session trusting `ca`
    /// (a PEM file), if given.
    pub async fn start(ca: Option<&Path>) -> Self {
        let home = tempfile::tempdir().unwrap();
        if let Some(ca) = ca {
            crate::chromium::trust_in_nss(home.path(), ca);
        }
        let port = free_port();
        let chromedriver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .env("HOME", home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian chromium-driver) is installed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary("/usr/bin/chromium").unwrap();
        let profile = home.path().join("profile");
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1400,1000",
            &format!("--user-data-dir={}", profile.display()),
        ] {
            caps.add_arg(arg).unwrap();
        }
        let driver = WebDriver::new(format!("http://127.0.0.1:{port}"), caps)
            .await
            .expect("a Chromium session");
        Self {
            driver,
            chromedriver,
            _home: home,
        }
    }

    /// Clicks what `by` finds and waits until the page it leads to has
    /// replaced this one (a click returns before the navigation ends).
    pub async fn click_and_load(&self, by: By) {
        let page = self.driver.find(By::Tag("html")).await.unwrap();
        self.driver.find(by).await.unwrap().click().await.unwrap();
        page.wait_until().stale().await.unwrap();
    }

    /// The page's HTML now.
    pub async fn source(&self) -> String {
        self.driver.source().await.unwrap()
    }

    /// Runs `fetch(url, init)` in the page and returns `[status, body]`.
    pub async fn fetch(&self, url: &str, init: serde_json::Value) -> (u16, String) {
        let r = self
            .driver
            .execute_async(
                "const [url, init, done] = arguments; \
                 fetch(url, init).then(r => r.text().then(t => done([r.status, t]))).catch(e => done([0, String(e)]));",
                vec![serde_json::json!(url), init],
            )
            .await
            .unwrap();
        let v = r.json().clone();
        (
            v[0].as_u64().unwrap_or(0) as u16,
            v[1].as_str().unwrap_or("").to_string(),
        )
    }

    /// Ends the session and chromedriver.
    pub async fn quit(mut self) {
        let _ = self.driver.clone().quit().await;
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.chromedriver.kill();
    }
}
