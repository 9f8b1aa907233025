//! `gatehouse.example.toml` says it documents every key with its default.
//! Hold it to that: with its commented-out examples switched on it must
//! parse (every documented key exists), and every key the configuration
//! has must appear in it (none left out).

use std::collections::BTreeSet;

use gatehouse::config::Config;

const EXAMPLE: &str = include_str!("../gatehouse.example.toml");

/// The example with its commented-out settings switched on: a `# [section]`
/// or `# key = value` line that is TOML by itself loses its `# ` (prose and
/// `# # …` stay comments).
fn switched_on(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let body = line.strip_prefix("# ").unwrap_or(line);
        // A setting is a line that is TOML on its own; prose is not, nor is
        // an indented example of another file.
        let setting = !body.starts_with(char::is_whitespace)
            && (body.starts_with('[') || body.contains('='))
            && toml::from_str::<toml::Table>(body).is_ok();
        if line.starts_with("# ") && setting {
            out.push_str(body);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Dotted paths of every key in a JSON tree; array elements share their
/// array's path.
fn keys(prefix: &str, v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                keys(&path, v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                keys(prefix, item, out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_documented_key_exists_and_every_key_is_documented() {
    let text = switched_on(EXAMPLE);
    let parsed: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let config: Config =
        toml::from_str(&text).unwrap_or_else(|e| panic!("a documented key is not a key: {e}"));

    // JSON keeps `None` fields (as null), so an optional key the example
    // never mentions still shows up here.
    let mut known = BTreeSet::new();
    keys("", &serde_json::to_value(&config).unwrap(), &mut known);
    let mut documented = BTreeSet::new();
    keys("", &serde_json::to_value(&parsed).unwrap(), &mut documented);

    let missing: Vec<_> = known.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "keys the example does not document: {missing:?}"
    );
}

#[test]
fn the_example_as_shipped_is_the_built_in_defaults() {
    let config: Config = toml::from_str(EXAMPLE).unwrap();
    assert_eq!(config, Config::default());
}
