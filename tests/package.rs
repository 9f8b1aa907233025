//! The Debian package: built with the documented command
//! (`scripts/package.sh`: cargo-deb on the `dist` profile), unpacked with
//! `dpkg -x` into a throw-away root, and checked there: the binary runs,
//! the packaged config passes `gatehouse check`, the rule packs compile,
//! the maintainer scripts create the user, and `systemd-analyze` finds the
//! unit clean and hardened.
//!
//! The first run builds the `dist` binary (several minutes); later runs
//! reuse it and only repack.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd`, asserting it succeeds; returns (stdout, stderr).
fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs it)"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// Builds the package (cargo-deb repacks; cargo rebuilds only what changed).
fn build() -> PathBuf {
    let mut cmd = Command::new(repo().join("scripts/package.sh"));
    // Without the variables `cargo test` sets for its tests: build scripts
    // (ring's) rerun when they change, which would rebuild the dist
    // binary on every switch between this test and a shell.
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO") && key != "CARGO_HOME" {
            cmd.env_remove(key);
        }
    }
    let (stdout, _) = run(cmd.current_dir(repo()));
    let deb = repo().join(stdout.lines().last().expect("the .deb's path").trim());
    assert!(deb.is_file(), "{} not built", deb.display());
    deb
}

fn files(dir: &Path, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    names
}

#[test]
fn the_debian_package_installs_a_working_gateway_and_a_clean_hardened_unit() {
    let deb = build();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(root));
    let control = root.join("DEBIAN");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));

    // Control data: name, version, the adduser dependency of postinst.
    let fields = std::fs::read_to_string(control.join("control")).unwrap();
    assert!(fields.contains("Package: gatehouse\n"), "{fields}");
    assert!(
        fields.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{fields}"
    );
    assert!(fields.contains("adduser"), "{fields}");

    // The binary, from the dist profile: it runs, without debug info or symbols.
    let bin = root.join("usr/bin/gatehouse");
    let (version, _) = run(Command::new(&bin).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let (sections, _) = run(Command::new("readelf").args(["-S", "--wide"]).arg(&bin));
    assert!(
        !sections.contains(".debug_") && !sections.contains(".symtab"),
        "the packaged binary carries debug info or symbols:\n{sections}"
    );

    // The config: a conffile, with the package's paths.
    let config = std::fs::read_to_string(root.join("etc/gatehouse/gatehouse.toml")).unwrap();
    for path in [
        "\"/var/lib/gatehouse/ca\"",
        "\"/var/lib/gatehouse/journal\"",
        "\"/etc/gatehouse/dlp-rules\"",
    ] {
        assert!(config.contains(path), "config lacks {path}:\n{config}");
    }
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert!(
        conffiles.contains("/etc/gatehouse/gatehouse.toml")
            && conffiles.contains("/etc/gatehouse/dlp-rules/payment-cards.toml"),
        "{conffiles}"
    );

    // The rule packs: every shipped pack, and they compile.
    let rules = root.join("etc/gatehouse/dlp-rules");
    assert_eq!(
        files(&rules, ".toml"),
        files(&repo().join("dlp-rules"), ".toml")
    );
    run(Command::new(&bin).args(["rules", "check"]).arg(&rules));

    // `gatehouse check` accepts the packaged config, its paths moved into
    // the throw-away root (state directory as systemd would create it).
    let state = root.join("var/lib/gatehouse");
    std::fs::create_dir_all(&state).unwrap();
    let moved = config
        .replace("/var/lib/gatehouse", &state.display().to_string())
        .replace(
            "/etc/gatehouse",
            &root.join("etc/gatehouse").display().to_string(),
        );
    let moved_file = root.join("etc/gatehouse/check.toml");
    std::fs::write(&moved_file, moved).unwrap();
    run(Command::new(&bin)
        .arg("--config")
        .arg(&moved_file)
        .arg("ca")
        .arg("init"));
    let (out, err) = run(Command::new(&bin)
        .arg("--config")
        .arg(&moved_file)
        .arg("check"));
    assert!(out.contains("ok"), "{out}{err}");

    // postinst creates the service user; the unit is not enabled on install.
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(!postinst.contains("#DEBHELPER#"), "{postinst}");

    // The unit: verified clean against the unpacked root (its binary, and
    // the host's targets and /bin/kill copied in), hardened.
    let unit_dir = ["lib/systemd/system", "usr/lib/systemd/system"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.join("gatehouse.service").is_file())
        .expect("gatehouse.service in the package");
    let unit = std::fs::read_to_string(unit_dir.join("gatehouse.service")).unwrap();
    for line in [
        "ExecStart=/usr/bin/gatehouse --config /etc/gatehouse/gatehouse.toml run",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=gatehouse",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=gatehouse",
        "LimitNOFILE=65536",
        "Restart=on-failure",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "unit lacks {line}:\n{unit}"
        );
    }
    for target in std::fs::read_dir("/lib/systemd/system").unwrap().flatten() {
        let name = target.file_name();
        if name.to_string_lossy().ends_with(".target") && !unit_dir.join(&name).exists() {
            let to = unit_dir.join(&name);
            match std::fs::read_link(target.path()) {
                Ok(link) => std::os::unix::fs::symlink(link, to).unwrap(),
                Err(_) => {
                    std::fs::copy(target.path(), to).unwrap();
                }
            }
        }
    }
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.join("bin/kill")).unwrap();
    let root_arg = format!("--root={}", root.display());
    let (out, err) =
        run(Command::new("systemd-analyze").args(["verify", &root_arg, "gatehouse.service"]));
    assert!(
        out.trim().is_empty() && err.trim().is_empty(),
        "systemd-analyze verify is not clean:\n{out}{err}"
    );
    // Exposure 0 (locked down) .. 10 (unsafe); the unit scores 1.8.
    let (out, err) = run(Command::new("systemd-analyze").args([
        "security",
        "--offline=yes",
        "--threshold=25",
        &root_arg,
        "gatehouse.service",
    ]));
    assert!(out.contains("Overall exposure level"), "{out}{err}");
}
