//! What the Debian package installs, checked from the workspace: the completions and man pages
//! the real binary generates, the example /etc/tether/tether.toml (passes `tether check`), and
//! the systemd unit (required keys, and `systemd-analyze verify` with no complaint).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tether_testbed::ScratchDir;

fn tether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .output()
        .unwrap()
}

fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(file)
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn completions_name_the_real_subcommands_and_options() {
    for (shell, marker, config) in [
        ("bash", "complete -F", "--config"),
        ("zsh", "#compdef tether", "--config"),
        ("fish", "complete -c tether", "-l config"),
    ] {
        let script = stdout_of(&tether(&["completions", shell]));
        assert!(script.contains(marker), "{shell}: {script}");
        for word in ["run", "check", "convert", "probe", "sim", "loadgen", config] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let bad = tether(&["completions", "pwsh"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bash, zsh, fish"));
}

#[test]
fn man_pages_document_each_subcommand_and_render() {
    let dir = ScratchDir::create("man-pages").unwrap();
    let listed = stdout_of(&tether(&["man", dir.path().to_str().unwrap()]));
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "tether-check.1",
            "tether-completions.1",
            "tether-convert.1",
            "tether-loadgen.1",
            "tether-probe.1",
            "tether-run.1",
            "tether-sim.1",
            "tether-table.1",
            "tether.1"
        ]
    );
    assert_eq!(listed.lines().count(), names.len(), "{listed}");
    let run = std::fs::read_to_string(dir.path().join("tether-run.1")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        run.contains(&format!(".TH TETHER-RUN 1  \"tether {version}\"")),
        "{run}"
    );
    for option in ["\\-\\-config", "\\-\\-haproxy", "\\-\\-threads", "SIGHUP"] {
        assert!(run.contains(option), "tether-run.1 lacks {option}");
    }
    let top = std::fs::read_to_string(dir.path().join("tether.1")).unwrap();
    for sub in [
        "run",
        "check",
        "convert",
        "probe",
        "table",
        "sim",
        "loadgen",
        "completions",
    ] {
        assert!(
            top.contains(&format!("tether\\-{sub}(1)")),
            "tether.1 lacks {sub}: {top}"
        );
    }
    assert!(
        !top.contains("tether\\-man(1)"),
        "the hidden packaging step is not documented"
    );
    // The page renders with man(1), as an operator reads it.
    let man = Path::new("/usr/bin/man");
    assert!(
        man.exists(),
        "man is missing: install it with `apt-get install man-db` (scripts/packages.txt)"
    );
    let shown = Command::new(man)
        .arg("-l")
        .arg(dir.path().join("tether-run.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let text = stdout_of(&shown);
    assert!(
        text.contains("NAME") && text.contains("--config <CONFIG>"),
        "{text}"
    );
}

#[test]
fn the_example_config_passes_check() {
    let out = tether(&["check", packaging("tether.toml").to_str().unwrap()]);
    let report = stdout_of(&out);
    assert!(report.contains("0 error(s), 0 warning(s)"), "{report}");
}

/// The unit's `[Service]` settings as (key, value) pairs, in file order.
fn service_settings(unit: &str) -> Vec<(&str, &str)> {
    let mut section = "";
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]" && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k, v));
            }
        }
    }
    out
}

#[test]
fn the_unit_is_notify_reloads_with_hup_and_is_hardened() {
    let unit = std::fs::read_to_string(packaging("tether.service")).unwrap();
    let settings = service_settings(&unit);
    let get = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("tether.service has no {key}="))
    };
    assert_eq!(get("Type"), "notify");
    assert_eq!(get("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(
        get("ExecStart"),
        "/usr/bin/tether run -c /etc/tether/tether.toml"
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert_eq!(get(key), value, "{key}");
    }
    assert!(unit.contains("USR2"), "the unit explains in-place upgrades");
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    assert!(
        analyze.exists(),
        "systemd-analyze is missing: install it with `apt-get install systemd` (scripts/packages.txt)"
    );
    // The unit as installed, but pointing at this build's binary (no package installed here).
    let unit = std::fs::read_to_string(packaging("tether.service"))
        .unwrap()
        .replace("/usr/bin/tether", env!("CARGO_BIN_EXE_tether"));
    let dir = ScratchDir::create("unit-verify").unwrap();
    let path = dir.path().join("tether.service");
    std::fs::write(&path, unit).unwrap();
    // --man=no: the pages are checked above; here they are not installed.
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    // verify exits 0 on settings it ignores; every complaint goes to stderr.
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
}
