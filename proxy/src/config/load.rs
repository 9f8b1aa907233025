//! Reading the config file and collecting every problem in it at once.

use std::path::{Path, PathBuf};

use super::validate::{validate, Problem, Problems};
use super::Config;

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file (given with `--config`, or `gatehouse.toml` in the working directory).
    File(PathBuf),
    /// No file: the built-in defaults.
    Defaults,
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Defaults => f.write_str("built-in defaults"),
        }
    }
}

/// A configuration that loaded, with any warnings about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration, relative paths resolved against the file's directory.
    pub config: Config,
    /// Where it came from.
    pub source: ConfigSource,
    /// Things worth knowing that do not stop the gateway.
    pub warnings: Vec<Problem>,
}

/// The file used when no `--config` is given, if present in the working directory.
pub const DEFAULT_FILE: &str = "gatehouse.toml";

/// Loads the configuration: `path` if given, else `gatehouse.toml` in the
/// working directory if present, else the built-in defaults.
///
/// Every problem is reported at once; warnings come back in [`Loaded`].
pub fn load(path: Option<&Path>) -> Result<Loaded, Problems> {
    let path = match path {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
    };
    let Some(path) = path else {
        return finish(Config::default(), ConfigSource::Defaults, Vec::new(), None);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Problems(vec![Problem::error(
            Some(&path),
            "",
            format!("cannot read config file: {e}"),
        )])
    })?;
    load_str(&text, &path)
}

/// Loads configuration text as if read from `path` (relative paths resolve
/// against its directory).
pub fn load_str(text: &str, path: &Path) -> Result<Loaded, Problems> {
    let (config, problems) = parse(text, path);
    let mut config = config.unwrap_or_default();
    let base = path.parent().unwrap_or(Path::new(""));
    config.resolve_paths(base);
    finish(
        config,
        ConfigSource::File(path.to_path_buf()),
        problems,
        Some(text),
    )
}

/// Loads the configuration as [`load`] does, but only parses it: syntax,
/// unknown keys and wrong types are problems; nothing it names is checked
/// (no CA key, no rules directory). For `gatehouse ca show | export`, which
/// need only the CA certificate.
pub fn load_unvalidated(path: Option<&Path>) -> Result<Loaded, Problems> {
    let path = match path {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
    };
    let Some(path) = path else {
        return Ok(Loaded {
            config: Config::default(),
            source: ConfigSource::Defaults,
            warnings: Vec::new(),
        });
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Problems(vec![Problem::error(
            Some(&path),
            "",
            format!("cannot read config file: {e}"),
        )])
    })?;
    let (config, mut problems) = parse(&text, &path);
    add_lines(&mut problems, &text);
    let (errors, warnings): (Vec<_>, Vec<_>) = problems.into_iter().partition(Problem::is_error);
    if !errors.is_empty() {
        return Problems(errors).into_err();
    }
    let mut config = config.unwrap_or_default();
    config.resolve_paths(path.parent().unwrap_or(Path::new("")));
    Ok(Loaded {
        config,
        source: ConfigSource::File(path),
        warnings,
    })
}

/// Adds the line of the key each problem names, when found in `text`.
fn add_lines(problems: &mut [Problem], text: &str) {
    for p in problems {
        let key: Vec<String> = p
            .key
            .split('.')
            .map(|k| k.split('[').next().unwrap_or(k).to_string())
            .collect();
        if let Some(line) = find_line(text, &key).filter(|_| !p.key.is_empty()) {
            p.message.push_str(&format!(" (line {line})"));
        }
    }
}

fn finish(
    config: Config,
    source: ConfigSource,
    mut problems: Vec<Problem>,
    text: Option<&str>,
) -> Result<Loaded, Problems> {
    let file = match &source {
        ConfigSource::File(p) => Some(p.as_path()),
        ConfigSource::Defaults => None,
    };
    problems.extend(validate(&config, file));
    if let Some(text) = text {
        add_lines(&mut problems, text);
    }
    let (errors, warnings): (Vec<_>, Vec<_>) = problems.into_iter().partition(Problem::is_error);
    if errors.is_empty() {
        Ok(Loaded {
            config,
            source,
            warnings,
        })
    } else {
        Problems(errors.into_iter().chain(warnings).collect()).into_err()
    }
}

/// Deserialises with `deny_unknown_fields`; on each failure records the
/// problem, removes the offending key and tries again, so one run reports
/// every unknown key and bad value instead of only the first.
fn parse(text: &str, path: &Path) -> (Option<Config>, Vec<Problem>) {
    let mut table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let msg = e.message().to_string();
            let at = e
                .span()
                .map(|s| format!(" (line {})", line_of(text, s.start)))
                .unwrap_or_default();
            return (
                None,
                vec![Problem::error(
                    Some(path),
                    "",
                    format!("TOML syntax{at}: {msg}"),
                )],
            );
        }
    };
    let mut problems = Vec::new();
    // Each round removes one key, so this terminates; the bound is a backstop.
    for _ in 0..=count_keys(&table) {
        let value = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, Config>(value) {
            Ok(config) => return (Some(config), problems),
            Err(err) => {
                let segments = path_segments(err.path());
                // The TOML deserialiser appends "in `key`" lines; the key is shown already.
                let inner = err.inner().to_string();
                let message = inner.lines().next().unwrap_or_default().to_string();
                let mut key = segments.clone();
                if let Some(field) = unknown_field(&message) {
                    if key.last().map(String::as_str) != Some(field) {
                        key.push(field.to_string());
                    }
                }
                problems.push(Problem::error(Some(path), &display_key(&key), message));
                if !remove_key(&mut table, &key) {
                    break;
                }
            }
        }
    }
    (None, problems)
}

fn path_segments(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(format!("[{index}]")),
            _ => None,
        })
        .collect()
}

fn display_key(key: &[String]) -> String {
    let mut out = String::new();
    for seg in key {
        if !seg.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(seg);
    }
    out
}

/// `unknown field `x`, expected …` → `x`.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// Removes the table entry named by `key` (array indices remove the whole array).
fn remove_key(table: &mut toml::Table, key: &[String]) -> bool {
    let names: Vec<&String> = key.iter().take_while(|s| !s.starts_with('[')).collect();
    let Some((last, parents)) = names.split_last() else {
        return false;
    };
    let mut t = table;
    for p in parents {
        match t.get_mut(p.as_str()) {
            Some(toml::Value::Table(inner)) => t = inner,
            _ => return false,
        }
    }
    t.remove(last.as_str()).is_some()
}

fn count_keys(table: &toml::Table) -> usize {
    table
        .values()
        .map(|v| match v {
            toml::Value::Table(t) => 1 + count_keys(t),
            _ => 1,
        })
        .sum()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Best-effort line of `key` in the source: the `[section]` header, then the
/// first `name =` line after it.
fn find_line(text: &str, key: &[String]) -> Option<usize> {
    let names: Vec<&str> = key
        .iter()
        .take_while(|s| !s.starts_with('['))
        .map(String::as_str)
        .collect();
    let (leaf, sections) = names.split_last()?;
    let header = format!("[{}]", sections.join("."));
    let mut in_section = sections.is_empty();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            if in_section && !sections.is_empty() {
                break;
            }
            in_section = t == header;
            if in_section && sections.is_empty() {
                return Some(i + 1);
            }
            if t == format!("[{}]", names.join(".")) {
                return Some(i + 1);
            }
            continue;
        }
        if in_section {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim().trim_matches('"') == *leaf {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

impl Config {
    /// Makes relative paths relative to `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        if base.as_os_str().is_empty() {
            return;
        }
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.ca.dir);
        self.ca.cert.iter_mut().for_each(fix);
        self.ca.key.iter_mut().for_each(fix);
        self.ca.chain.iter_mut().for_each(fix);
        self.upstream.extra_roots.iter_mut().for_each(fix);
        self.intercept.app_catalog.iter_mut().for_each(fix);
        self.admin.token_file.iter_mut().for_each(fix);
        if let Some(c) = &mut self.console {
            c.resolve_paths(&fix);
        }
        fix(&mut self.rules.dir);
        fix(&mut self.events.journal_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match load_str(text, Path::new("/nonexistent/gatehouse.toml")) {
            Ok(_) => Vec::new(),
            Err(p) => {
                p.0.iter()
                    .filter(|p| p.is_error())
                    .map(|p| p.to_string())
                    .collect()
            }
        }
    }

    #[test]
    fn quic_mistakes_name_their_key_and_file() {
        let text = "[quic]\nlisten = \"[::]:8443\"\nmax_flows = 0\nidle_timeout = \"0s\"\n\n\
                    [[intercept.rules]]\nhosts = [\"a.test\"]\naction = \"passthrough\"\nquic = \"intercept\"\n";
        let joined = errors(text).join("\n");
        assert!(joined.contains("quic.max_flows"), "{joined}");
        assert!(joined.contains("quic.idle_timeout"), "{joined}");
        assert!(joined.contains("intercept.rules[0].quic"), "{joined}");
        assert!(joined.contains("/nonexistent/gatehouse.toml"), "{joined}");
        let bad =
            errors("[[intercept.rules]]\naction = \"intercept\"\nquic = \"maybe\"\n").join("\n");
        assert!(bad.contains("intercept.rules[0].quic"), "{bad}");
        let ok = load_str(
            "[quic]\nlisten = \"0.0.0.0:8443\"\n[[intercept.rules]]\napps = [\"slack\"]\naction = \"intercept\"\nquic = \"pass\"\n",
            Path::new("/nonexistent/gatehouse.toml"),
        )
        .map(|l| l.config)
        .expect("valid");
        assert_eq!(ok.intercept.rules[0].quic, crate::config::QuicAction::Pass);
        assert!(!ok.strip_alt_svc(), "a rule passes QUIC: Alt-Svc stays");
        assert!(crate::config::Config::default().strip_alt_svc());
        // QUIC interception is carried out: valid, and nothing to warn about.
        let intercepted = load_str(
            "[quic]\nlisten = \"0.0.0.0:8443\"\n[[intercept.rules]]\naction = \"intercept\"\nquic = \"intercept\"\n",
            Path::new("/nonexistent/gatehouse.toml"),
        )
        .expect("valid");
        assert_eq!(
            intercepted.config.intercept.rules[0].quic,
            crate::config::QuicAction::Intercept
        );
        assert!(
            !intercepted
                .warnings
                .iter()
                .any(|w| w.to_string().contains("intercept.rules[0].quic")),
            "{:?}",
            intercepted.warnings
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = "[proxy]\nlisten = \"127.0.0.1:8080\"\nbogus = 1\nallowed_clients = [\"10.0.0.0/33\"]\n\n[admin]\nlisten = \"nowhere\"\n\n[surprise]\nx = 1\n";
        let errs = errors(text);
        let joined = errs.join("\n");
        assert!(joined.contains("proxy.bogus"), "{joined}");
        assert!(joined.contains("proxy.allowed_clients[0]"), "{joined}");
        assert!(joined.contains("10.0.0.0/33"), "{joined}");
        assert!(joined.contains("admin.listen"), "{joined}");
        assert!(joined.contains("surprise"), "{joined}");
        assert!(joined.contains("(line 3)"), "unknown key line: {joined}");
        assert!(
            errs.iter()
                .all(|e| e.contains("/nonexistent/gatehouse.toml")),
            "{joined}"
        );
    }

    #[test]
    fn syntax_error_names_the_line() {
        let errs = errors("[proxy]\nlisten = \n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("line 2"), "{}", errs[0]);
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let loaded = load_str(
            "[rules]\ndir = \"/\"\n",
            Path::new("/etc/gatehouse/gatehouse.toml"),
        )
        .expect("valid");
        assert_eq!(loaded.config.ca.dir, Path::new("/etc/gatehouse/certs"));
        assert_eq!(loaded.config.rules.dir, Path::new("/"));
    }

    #[test]
    fn durations_are_human() {
        let loaded = load_str(
            "[proxy]\nidle_timeout = \"2m\"\n[rules]\ndir = \"/\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(
            loaded.config.proxy.idle_timeout,
            std::time::Duration::from_secs(120)
        );
    }
}
