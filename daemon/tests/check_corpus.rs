//! Real-world HAProxy TCP configurations (`tests/corpus/*.cfg`: Patroni, Redis, Galera,
//! RabbitMQ, SMTP, TLS passthrough by SNI, LDAP, a Kubernetes control plane, Galera with
//! feedback agents and tracking servers), each first
//! accepted by HAProxy 2.6's own `haproxy -c`, then imported by `tether check`: what runs as is,
//! and, for what cannot, exactly which features stop it (each an error with its line and a fix).
//! A keyword tether learns turns its row from "cannot" into "runs"; a keyword it silently drops
//! would show up as a config that "runs" here but not as its file says.

use std::path::{Path, PathBuf};
use std::process::Command;

use tether::check::{check_file, Severity};

/// Each corpus file and the features whose errors stop it (empty: it runs).
const CORPUS: &[(&str, &[&str])] = &[
    ("patroni-postgres.cfg", &[]),
    ("redis-master.cfg", &[]),
    ("mysql-galera.cfg", &[]),
    ("rabbitmq-amqp.cfg", &[]),
    ("smtp-relay.cfg", &[]),
    ("tls-passthrough-sni.cfg", &[]),
    ("ldap.cfg", &[]),
    ("k8s-apiserver.cfg", &[]),
    ("galera-agent-track.cfg", &[]),
];

fn corpus(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(file)
}

#[test]
fn every_corpus_file_is_a_config_haproxy_accepts() {
    const HAPROXY: &str = "/usr/sbin/haproxy";
    assert!(
        Path::new(HAPROXY).exists(),
        "{HAPROXY} is needed: apt-get install -y haproxy (.ci/run does)"
    );
    let files: Vec<String> = std::fs::read_dir(corpus(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cfg"))
        .collect();
    assert_eq!(
        files.len(),
        CORPUS.len(),
        "every file has its row: {files:?}"
    );
    for (file, _) in CORPUS {
        let out = Command::new(HAPROXY)
            .args(["-c", "-f"])
            .arg(corpus(file))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "haproxy -c {file}:\n{text}");
        assert!(
            !text.contains("[WARNING]"),
            "haproxy -c {file} warns:\n{text}"
        );
    }
}

#[test]
fn tether_runs_what_it_can_and_names_what_stops_the_rest() {
    let mut table = String::new();
    let mut wrong = Vec::new();
    for (file, stoppers) in CORPUS {
        let report = check_file(&corpus(file));
        let errors: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        table += &format!("{file}: {} error(s)\n", errors.len());
        for f in &errors {
            table += &format!("  {}:{}: {}\n    fix: {}\n", f.file, f.line, f.what, f.fix);
            assert!(f.line > 0 && !f.fix.is_empty(), "{f:?}");
        }
        let mut unmatched: Vec<&str> = stoppers.to_vec();
        let all_named =
            errors.iter().all(
                |f| match unmatched.iter().position(|s| f.what.contains(s)) {
                    Some(i) => {
                        unmatched.remove(i);
                        true
                    }
                    None => false,
                },
            );
        if !all_named || !unmatched.is_empty() {
            wrong.push(*file);
        }
    }
    eprintln!("{table}");
    assert!(
        wrong.is_empty(),
        "unexpected verdicts for {wrong:?}:\n{table}"
    );
}
