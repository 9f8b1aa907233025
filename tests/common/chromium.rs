//! A real headless Chromium (Debian's `chromium` + `chromium-driver`),
//! driven over WebDriver with `thirtyfour`: chromedriver on a free loopback
//! port, a profile and a `HOME` of its own (so `~/.pki/nssdb`, where
//! Chromium on Linux reads user-trusted CAs, belongs to this browser only),
//! and every request sent through a given proxy.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thirtyfour::prelude::*;
use thirtyfour::ChromiumLikeCapabilities;

/// A chromedriver process and its browser session; the driver is killed on drop.
pub struct Chromium {
    driver_process: Child,
    /// The WebDriver session.
    pub driver: WebDriver,
    home: tempfile::TempDir,
}

/// Creates an NSS database in `home/.pki/nssdb` trusting `ca_pem` as a CA
/// for websites, as `certutil` (libnss3-tools) does for a user.
pub fn trust_in_nss(home: &Path, ca_pem: &Path) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db = format!("sql:{}", db.display());
    let run = |args: &[&str]| {
        let out = Command::new("certutil")
            .args(args)
            .output()
            .expect("certutil (Debian package libnss3-tools) must be installed: scripts/test.sh installs it");
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["-N", "-d", &db, "--empty-password"]);
    run(&[
        "-A",
        "-d",
        &db,
        "-t",
        "C,,",
        "-n",
        "gatehouse-test-ca",
        "-i",
        ca_pem.to_str().unwrap(),
    ]);
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Chromium {
    /// Starts chromedriver and a headless Chromium whose every request
    /// goes through `proxy`. `prepare_home` runs on the browser's empty
    /// `HOME` first (e.g. [`trust_in_nss`]).
    pub async fn start(proxy: SocketAddr, prepare_home: impl FnOnce(&Path)) -> Self {
        let home = tempfile::tempdir().unwrap();
        prepare_home(home.path());
        let port = free_port();
        let driver_process = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .env("HOME", home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed: scripts/test.sh installs it");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary("/usr/bin/chromium").unwrap();
        let profile = home.path().join("profile");
        for arg in [
            "--headless=new".to_string(),
            "--no-sandbox".into(), // tests run as root
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            format!("--user-data-dir={}", profile.display()),
            format!("--proxy-server=http://{proxy}"),
            // Plain http:// stays plain: no automatic upgrade attempt.
            "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable".into(),
        ] {
            caps.add_arg(&arg).unwrap();
        }
        let driver = WebDriver::new(format!("http://127.0.0.1:{port}"), caps)
            .await
            .expect("a Chromium session");
        Self {
            driver_process,
            driver,
            home,
        }
    }

    /// The browser's `HOME`.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Ends the session (closing the browser) and the driver.
    pub async fn quit(mut self) {
        let driver = self.driver.clone();
        let _ = driver.quit().await;
        let _ = self.driver_process.kill();
        let _ = self.driver_process.wait();
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.driver_process.kill();
        let _ = self.driver_process.wait();
    }
}
