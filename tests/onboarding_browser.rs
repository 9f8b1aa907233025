//! The onboarding page in a real browser (headless Chromium through the
//! real gateway's explicit proxy): it offers every format, and its trust
//! check turns green only when the CA is in the browser's NSS store.

#[path = "common/chromium.rs"]
mod chromium;
mod common;

use std::time::{Duration, Instant};

use chromium::{trust_in_nss, Chromium};
use common::Gatehouse;
use thirtyfour::prelude::*;

const PAGE: &str = "http://gatehouse.onboarding/";

/// The trust check's verdict once it has one: the status element's class.
async fn trust_verdict(browser: &Chromium) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let el = browser
            .driver
            .find(By::Id("trust-status"))
            .await
            .expect("the page has a trust status");
        let class = el.class_name().await.unwrap().unwrap_or_default();
        if class == "trusted" || class == "untrusted" {
            return (class, el.text().await.unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "the trust check never finished (class {class:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_offers_every_format_and_the_trust_check_follows_the_nss_store() {
    let gw = Gatehouse::start("[onboarding]\nhost = \"gatehouse.onboarding\"\n");

    // A browser that does not trust the CA: every format offered, red.
    let browser = Chromium::start(gw.proxy, |_| {}).await;
    browser.driver.goto(PAGE).await.unwrap();
    assert_eq!(
        browser.driver.title().await.unwrap(),
        "Install the Gatehouse Interception CA certificate"
    );
    for href in ["/ca.mobileconfig", "/ca.cer", "/ca.pem", "/proxy.pac"] {
        let links = browser
            .driver
            .find_all(By::Css(format!("a[href=\"{href}\"]")))
            .await
            .unwrap();
        assert!(!links.is_empty(), "no link to {href}");
    }
    let mine = browser
        .driver
        .find(By::Css("section.yours"))
        .await
        .expect("the browser's own platform is singled out");
    assert_eq!(mine.attr("id").await.unwrap().as_deref(), Some("linux"));
    let (class, text) = trust_verdict(&browser).await;
    assert_eq!(class, "untrusted", "{text}\n{}", gw.log());
    assert!(text.contains("Not trusted"), "{text}");
    browser.quit().await;

    // The same page with the CA in the browser's NSS store: green.
    let ca = gw.ca_cert.clone();
    let browser = Chromium::start(gw.proxy, |home| trust_in_nss(home, &ca)).await;
    browser.driver.goto(PAGE).await.unwrap();
    let (class, text) = trust_verdict(&browser).await;
    assert_eq!(class, "trusted", "{text}\n{}", gw.log());
    assert!(text.starts_with("Trusted"), "{text}");
    browser.quit().await;
}
