//! Nothing journaled is lost and nothing shows twice: ClickHouse stopped
//! while events flow and restarted; the gateway killed with SIGKILL
//! mid-stream (with a torn journal tail and a replayed batch) and restarted.

mod common;
mod events_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Gatehouse;
use events_support::{
    ch, ch_count, connect_status, events_json, ids, try_count, wait_until, OwnClickHouse,
};
use nix::sys::signal::Signal;

fn config(journal: &Path, url: &str, db: &str) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [events]\njournal_dir = \"{}\"\n\
         [clickhouse]\nurl = \"{url}\"\ndatabase = \"{db}\"\nvalidation = false\n\
         batch_interval = \"100ms\"\nbatch_size = 50\nbackoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n",
        journal.display()
    )
}

/// Sends refused CONNECTs (one event each) until told to stop; counts the 403s.
fn refusals(
    proxy: SocketAddr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let target = format!("10.{}.{}.{}:443", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            if connect_status(proxy, &target).contains("403") {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

fn refused(proxy: SocketAddr, n: u32, offset: u32) {
    for i in offset..offset + n {
        let target = format!("10.1.{}.{}:443", (i >> 8) & 255, i & 255);
        assert!(connect_status(proxy, &target).contains("403"));
    }
}

/// Search output must hold each id once; returns the set.
fn unique_ids(dir: &Path, cfg: &Path, extra: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["search", "--limit", "0"];
    args.extend_from_slice(extra);
    let found = ids(&events_json(dir, cfg, &args));
    let set: BTreeSet<String> = found.iter().cloned().collect();
    assert_eq!(set.len(), found.len(), "an event shows twice");
    set
}

#[test]
fn clickhouse_stopped_while_events_flow_then_restarted_gets_every_event_once() {
    let own = OwnClickHouse::start();
    let db = common::unique("gh_ev_outage");
    let journal = tempfile::tempdir().unwrap();
    let gw = Gatehouse::start_in(
        tempfile::tempdir().unwrap(),
        &config(journal.path(), &own.url, &db),
    );
    let count = || {
        try_count(
            &own.url,
            &format!("SELECT count() FROM {db}.events_connection FINAL"),
        )
        .unwrap_or(0)
    };

    refused(gw.proxy, 100, 0);
    assert!(
        wait_until(Duration::from_secs(30), || count() == 100),
        "{}",
        gw.log()
    );

    own.pause();
    refused(gw.proxy, 150, 100);
    assert!(
        wait_until(Duration::from_secs(20), || gw
            .log()
            .contains("shipping events to ClickHouse failed")),
        "{}",
        gw.log()
    );
    own.resume();
    refused(gw.proxy, 50, 250);
    assert!(
        wait_until(Duration::from_secs(60), || count() == 300),
        "count {} after restart; log:\n{}",
        count(),
        gw.log()
    );
    let cfg = gw.path("gatehouse.toml");
    let found = unique_ids(gw.dir.path(), &cfg, &[]);
    assert_eq!(found.len(), 300);
    assert_eq!(
        ch_count(
            &own.url,
            &format!("SELECT uniqExact(id) FROM {db}.events_connection")
        ),
        300
    );
}

#[test]
fn sigkill_mid_stream_then_restart_loses_no_journaled_event_and_shows_none_twice() {
    let url = common::clickhouse_url();
    let db = common::unique("gh_ev_kill");
    let journal = tempfile::tempdir().unwrap();
    let cfg_text = config(journal.path(), &url, &db);
    let mut gw = Gatehouse::start_in(tempfile::tempdir().unwrap(), &cfg_text);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load = refusals(gw.proxy, stop.clone(), sent.clone());
    assert!(wait_until(Duration::from_secs(20), || sent
        .load(Ordering::Relaxed)
        > 400));
    gw.stop_with(Signal::SIGKILL);
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);

    // What was journaled: shipped rows plus what is still in the journal.
    let cfg = gw.path("gatehouse.toml");
    let mut journaled = unique_ids(gw.dir.path(), &cfg, &[]);
    journaled.extend(unique_ids(gw.dir.path(), &cfg, &["--journal"]));
    // The gateway records a refusal before it answers it, so the one
    // request in flight at the kill may be journaled but never answered.
    assert!(
        journaled.len() as u64 <= sent + 1,
        "{} journaled, {sent} answered",
        journaled.len()
    );
    assert!(
        journaled.len() as u64 + 50 >= sent,
        "only {} of {sent} answered events journaled",
        journaled.len()
    );

    // A crash between insert and acknowledgement: rewind the cursor so the
    // batch is shipped again. And a torn write at the tail.
    std::fs::write(journal.path().join("cursor"), "0 0\n").unwrap();
    let last = std::fs::read_dir(journal.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);

    let gw2 = Gatehouse::start_in(tempfile::tempdir().unwrap(), &cfg_text);
    assert!(
        wait_until(Duration::from_secs(10), || gw2
            .log()
            .contains("journal tail was torn")),
        "{}",
        gw2.log()
    );
    let final_count = || {
        try_count(
            &url,
            &format!("SELECT count() FROM {db}.events_connection FINAL"),
        )
        .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(60), || final_count()
            == journaled.len() as u64),
        "{} rows, {} journaled; log:\n{}",
        final_count(),
        journaled.len(),
        gw2.log()
    );
    let cfg2 = gw2.path("gatehouse.toml");
    let after = unique_ids(gw2.dir.path(), &cfg2, &[]);
    assert_eq!(after, journaled);
    // New events still flow after the recovery.
    refused(gw2.proxy, 5, 60_000);
    assert!(wait_until(Duration::from_secs(30), || final_count()
        == journaled.len() as u64 + 5));
    ch(&url, &format!("DROP DATABASE {db}"));
}
