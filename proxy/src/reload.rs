//! What a config reload changes: the keys that differ between the running
//! configuration and a new one, and which of them only a restart applies.
//!
//! Imports only `config`: the gateway and the CLI use it.

use serde_json::{Map, Value};

use crate::config::Config;

/// Keys a reload applies to new flows (a section name covers all its
/// keys). Anything else only takes effect at restart, including sections
/// this list does not know: a key is never claimed live by mistake.
const LIVE: &[&str] = &[
    "proxy",
    "identity",
    "upstream",
    "rules",
    "intercept",
    "events.store_message_text",
    "events.flow_update_interval",
    "admin.listen",
];

/// Keys inside [`LIVE`] sections that still need a restart: the CA and its
/// leaf cache, and the learned pinning state, are built once.
const RESTART_IN_LIVE: &[&str] = &[
    "intercept.leaf_max_days",
    "intercept.leaf_cache_size",
    "intercept.pinning_threshold",
    "intercept.pinning_ttl",
];

/// Whether a changed key (`section` or `section.key`) takes effect on reload.
pub fn is_live(key: &str) -> bool {
    let covered = |list: &[&str]| {
        list.iter().any(|k| {
            key == *k
                || key
                    .strip_prefix(k)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    };
    covered(LIVE) && !covered(RESTART_IN_LIVE)
}

/// The keys (`section.key`, or `section` for a whole optional section)
/// whose values differ between `old` and `new`, sorted.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (old, new) = (as_map(old), as_map(new));
    let mut keys = Vec::new();
    for (section, new_value) in &new {
        let old_value = old.get(section).unwrap_or(&Value::Null);
        match (old_value, new_value) {
            (Value::Object(o), Value::Object(n)) => {
                for (key, v) in n {
                    if o.get(key) != Some(v) {
                        keys.push(format!("{section}.{key}"));
                    }
                }
                keys.extend(
                    o.keys()
                        .filter(|k| !n.contains_key(*k))
                        .map(|k| format!("{section}.{k}")),
                );
            }
            (o, n) if o != n => keys.push(section.clone()),
            _ => {}
        }
    }
    keys.sort();
    keys
}

/// Puts the running values back into `new` for every changed key that
/// only a restart applies, and returns those keys: the state a reload puts
/// in force then says what is really in force.
pub fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<String> {
    let kept: Vec<String> = changed_keys(old, new)
        .into_iter()
        .filter(|k| !is_live(k))
        .collect();
    if kept.is_empty() {
        return kept;
    }
    let (old_map, mut new_map) = (as_map(old), as_map(new));
    for key in &kept {
        let (section, field) = match key.split_once('.') {
            Some((s, f)) => (s, Some(f)),
            None => (key.as_str(), None),
        };
        let old_section = old_map.get(section).cloned().unwrap_or(Value::Null);
        match field {
            None => {
                new_map.insert(section.to_string(), old_section);
            }
            Some(field) => {
                if let Some(Value::Object(target)) = new_map.get_mut(section) {
                    match old_section.get(field) {
                        Some(v) => target.insert(field.to_string(), v.clone()),
                        None => target.remove(field),
                    };
                }
            }
        }
    }
    match serde_json::from_value(Value::Object(new_map)) {
        Ok(config) => *new = config,
        // Every key of the config reads back what it writes (a unit test
        // holds it); should one not, keep the running config whole.
        Err(e) => {
            tracing::error!(error = %e, "config reload: cannot keep the running values; keeping the running config");
            *new = old.clone();
        }
    }
    kept
}

fn as_map(config: &Config) -> Map<String, Value> {
    match serde_json::to_value(config) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Config {
        crate::config::load_str(text, std::path::Path::new("/etc/gatehouse/gatehouse.toml"))
            .expect("valid config")
            .config
    }

    #[test]
    fn the_config_reads_back_what_it_writes() {
        for config in [
            Config::default(),
            load(include_str!("../../gatehouse.example.toml")),
        ] {
            let back: Config =
                serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
            assert_eq!(back, config);
        }
    }

    #[test]
    fn changed_keys_name_each_key_and_whole_optional_sections() {
        let old = load("[proxy]\nlisten = \"127.0.0.1:8080\"\n");
        let new = load(
            "[proxy]\nlisten = \"127.0.0.1:8081\"\nallowed_destinations = [\"10.0.0.0/8\"]\n\
             [clickhouse]\nurl = \"http://127.0.0.1:8123\"\n",
        );
        assert_eq!(
            changed_keys(&old, &new),
            ["clickhouse", "proxy.allowed_destinations", "proxy.listen"]
        );
        assert!(changed_keys(&new, &new).is_empty());
    }

    #[test]
    fn restart_only_keys_keep_their_running_value_and_live_ones_change() {
        let old = load("[events]\njournal_dir = \"/var/lib/a\"\n[intercept]\nleaf_max_days = 3\n");
        let mut new = load(
            "[events]\njournal_dir = \"/var/lib/b\"\nstore_message_text = true\n\
             [intercept]\nleaf_max_days = 5\ninspect_window = 4096\n\
             [ca]\nname = \"Other\"\n",
        );
        let kept = keep_restart_only(&old, &mut new);
        assert_eq!(
            kept,
            ["ca.name", "events.journal_dir", "intercept.leaf_max_days"]
        );
        assert_eq!(new.events.journal_dir, old.events.journal_dir);
        assert_eq!(new.intercept.leaf_max_days, 3);
        assert_eq!(new.ca, old.ca);
        assert!(new.events.store_message_text);
        assert_eq!(new.intercept.inspect_window, 4096);
    }

    #[test]
    fn liveness_is_by_whole_key_never_by_prefix() {
        assert!(is_live("proxy.allowed_destinations"));
        assert!(is_live("intercept.rules"));
        assert!(!is_live("intercept.pinning_ttl"));
        assert!(is_live("intercept.pinning"));
        assert!(!is_live("events.journal_dir"));
        assert!(!is_live("admin.token_file"));
        assert!(!is_live("clickhouse"));
        assert!(
            !is_live("quic.listen"),
            "an unknown section is restart-only"
        );
        assert!(!is_live("proxyish.listen"));
    }
}
