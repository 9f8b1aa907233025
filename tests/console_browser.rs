//! The console in a real browser (headless Chromium over WebDriver) that
//! trusts the gateway's CA: a finding made by real traffic through the
//! gateway, shown masked; reveal refused without a reason and to a viewer,
//! shown with one and audited (journal and ClickHouse); CSRF refused;
//! export masked and audited. One browser session for all of it.
//!
//! With `GATEHOUSE_CONSOLE_SCREENSHOTS=DIR` it also saves screenshots of
//! the main pages there (the README's come from this).

#[path = "common/browser.rs"]
mod browser;
#[path = "common/chromium.rs"]
mod chromium;
mod common;
mod console_support;

use std::path::PathBuf;

use browser::Browser;
use console_support::{Console, CARD, PASSWORD};
use thirtyfour::prelude::*;

async fn shot(b: &Browser, name: &str) {
    if let Ok(dir) = std::env::var("GATEHOUSE_CONSOLE_SCREENSHOTS") {
        let path = PathBuf::from(dir).join(format!("console-{name}.png"));
        b.driver.screenshot(&path).await.unwrap();
    }
}

async fn login(b: &Browser, url: &str, name: &str) {
    b.driver.goto(format!("{url}/login")).await.unwrap();
    b.driver
        .find(By::Id("name"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    b.driver
        .find(By::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    b.click_and_load(By::Id("login")).await;
    let who = b
        .driver
        .find(By::Id("whoami"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(who.starts_with(name), "{who}");
}

async fn csrf_of_page(b: &Browser) -> String {
    b.driver
        .find(By::Css("input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_investigation_in_the_browser_from_finding_to_reveal_is_audited() {
    let c = Console::start(5).await;
    c.make_finding().await;
    let b = Browser::start(Some(&c.gw.ca_cert)).await;
    let url = c.url.clone();

    b.driver.goto(format!("{url}/login")).await.unwrap();
    shot(&b, "login").await;
    login(&b, &url, "ana").await;

    // The incident list shows the finding, masked.
    let src = b.source().await;
    assert!(
        src.contains("payment-card") && src.contains("C042"),
        "{src}"
    );
    assert!(
        src.contains("9855"),
        "masked evidence keeps the last digits: {src}"
    );
    assert!(!src.contains(CARD), "plaintext in the incident list: {src}");
    shot(&b, "incidents").await;

    // The incident page: masked, with the flow and a reveal form.
    b.click_and_load(By::Css("#incidents tr.incident a")).await;
    let src = b.source().await;
    assert!(!src.contains(CARD), "plaintext before reveal: {src}");
    assert!(
        src.contains("The flow (connection event)") && src.contains("slack.com"),
        "{src}"
    );
    let finding = b
        .driver
        .find(By::Css("#findings tr[data-finding]"))
        .await
        .unwrap()
        .attr("data-finding")
        .await
        .unwrap()
        .unwrap();
    let incident_url = b.driver.current_url().await.unwrap().to_string();
    shot(&b, "incident").await;

    // Reveal without a reason: refused, nothing shown.
    b.click_and_load(By::Css("button.reveal-button")).await;
    let src = b.source().await;
    assert!(src.contains("a reason is required"), "{src}");
    assert!(!src.contains(CARD), "{src}");

    // With a reason: the text, once; the audit event is in the journal.
    b.driver.goto(&incident_url).await.unwrap();
    b.driver
        .find(By::Css("form.reveal textarea[name=reason]"))
        .await
        .unwrap()
        .send_keys("ticket SEC-7: confirm the leaked card")
        .await
        .unwrap();
    b.click_and_load(By::Css("button.reveal-button")).await;
    let shown = b
        .driver
        .find(By::Id("revealed"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(shown, CARD);
    shot(&b, "revealed").await;
    let audits = c.journal_audits();
    let reveal = audits
        .iter()
        .find(|a| a["action"] == "reveal" && a["target"] == finding.as_str())
        .unwrap_or_else(|| panic!("no reveal audit event in the journal: {audits:?}"));
    assert_eq!(reveal["actor"], "ana");
    assert_eq!(reveal["reason"], "ticket SEC-7: confirm the leaked card");
    c.wait_audit_in_clickhouse("reveal", &finding).await;
    // Not kept: the incident page is masked again.
    b.driver.goto(&incident_url).await.unwrap();
    assert!(!b.source().await.contains(CARD));

    // Triage through the page's forms: status and a note, shown in the history.
    let select = b.driver.find(By::Id("status-select")).await.unwrap();
    thirtyfour::components::SelectElement::new(&select)
        .await
        .unwrap()
        .select_by_value("in_review")
        .await
        .unwrap();
    b.click_and_load(By::Id("set-status")).await;
    b.driver
        .find(By::Id("note"))
        .await
        .unwrap()
        .send_keys("asked the user")
        .await
        .unwrap();
    b.click_and_load(By::Id("add-note")).await;
    let status = b
        .driver
        .find(By::Id("status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(status, "In review");
    let history = b
        .driver
        .find(By::Id("history"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        history.contains("asked the user") && history.contains("ana"),
        "{history}"
    );

    // A state change without the CSRF token is refused.
    let inc_id = incident_url.rsplit('/').next().unwrap().to_string();
    let (code, body) = b
        .fetch(
            &format!("/api/incidents/{inc_id}/status"),
            serde_json::json!({"method": "POST", "headers": {"content-type": "application/json"}, "body": "{\"status\":\"dismissed\"}"}),
        )
        .await;
    assert_eq!(code, 403, "{body}");

    // The conversation, flagged message highlighted.
    b.click_and_load(By::Id("conversation-link")).await;
    let flagged = b
        .driver
        .find_all(By::Css("#messages tr.flagged"))
        .await
        .unwrap();
    assert_eq!(flagged.len(), 1);
    assert!(!b.source().await.contains(CARD));
    shot(&b, "conversation").await;

    // Export (the list's link target), masked and audited.
    let (code, body) = b
        .fetch("/api/export?format=csv", serde_json::json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("9855") && !body.contains(CARD), "{body}");
    let exports = c
        .journal_audits()
        .into_iter()
        .filter(|a| a["action"] == "export")
        .count();
    assert_eq!(exports, 1);

    b.driver
        .goto(format!("{url}/inspectability?from=1h"))
        .await
        .unwrap();
    let table = b
        .driver
        .find(By::Id("inspectability"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(table.contains("slack"), "{table}");
    shot(&b, "inspectability").await;

    // A viewer: no reveal form, and 403 from the API.
    b.click_and_load(By::Id("logout")).await;
    login(&b, &url, "vic").await;
    b.driver.goto(&incident_url).await.unwrap();
    assert!(b
        .driver
        .find_all(By::Css("form.reveal"))
        .await
        .unwrap()
        .is_empty());
    let csrf = csrf_of_page(&b).await;
    let (code, body) = b
        .fetch(
            &format!("/api/findings/{finding}/reveal"),
            serde_json::json!({"method": "POST", "headers": {"content-type": "application/json", "x-csrf-token": csrf}, "body": "{\"reason\":\"curious\"}"}),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(!body.contains(CARD));
    b.quit().await;
}
