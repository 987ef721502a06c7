//! The stick-table API on a real daemon, over HTTP and through the `tether table` binary: setting
//! a key sends the next connection carrying that session ID to the chosen server; show, list
//! (paged, filtered by server), clear and clear-all do what they say.

mod stats_support;

use std::process::Command;

use stats_support::*;

async fn routed(rig: &Rig, session_id: &[u8]) -> String {
    rig.connect(&client_hello(session_id)).await
}

#[tokio::test]
async fn set_show_list_clear_over_http_change_routing() {
    let rig = Rig::start(
        &["alpha", "beta", "gamma"],
        "admin = true\nadmin-without-auth = true",
    )
    .await;
    let stats = rig.stats_addr();
    let id = [0xab; 32];
    let key = hex(&id);

    // Unknown key: balanced, and an empty table says so.
    let r = rig.get(&format!("/table/app/{key}")).await;
    assert_eq!(r.status, 404, "{}", r.body);

    for target in ["gamma", "alpha", "beta"] {
        let r = http(
            stats,
            "PUT",
            &format!("/table/app/{key}?server={target}"),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["server"], target);
        for _ in 0..3 {
            assert_eq!(
                routed(&rig, &id).await,
                target,
                "sticks to the server just set"
            );
        }
    }
    let shown = rig.get(&format!("/table/app/{key}")).await.json();
    assert_eq!(shown["server"], "beta");
    assert_eq!(shown["key"], key);
    assert!(shown["expires_in_ms"].as_u64().unwrap() > 0);

    // Several keys, listed sorted and paged, filtered by server.
    for (i, s) in ["alpha", "alpha", "gamma"].iter().enumerate() {
        let k = hex(&[i as u8 + 1; 32]);
        let r = http(
            stats,
            "PUT",
            &format!("/table/app/{k}?server={s}"),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let all = rig.get("/table/app").await.json();
    assert_eq!(all["total"], 4);
    let keys: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let page = rig.get("/table/app?offset=1&limit=2").await.json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["entries"][0]["key"], keys[1]);
    let alpha = rig.get("/table/app?server=alpha").await.json();
    assert_eq!(alpha["total"], 2);
    assert!(alpha["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["server"] == "alpha"));

    // Clear one key: the next connection with it is balanced again (and not necessarily beta).
    let r = http(stats, "DELETE", &format!("/table/app/{key}"), &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["server"], "beta");
    assert_eq!(rig.get(&format!("/table/app/{key}")).await.status, 404);
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(routed(&rig, &id).await);
    }
    after.sort();
    after.dedup();
    assert!(after.len() > 1, "balanced after clearing: {after:?}");

    // Clear all.
    let r = http(stats, "DELETE", "/table/app", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(rig.get("/table/app").await.json()["total"], 0);

    // Bad input is refused.
    assert_eq!(
        http(
            stats,
            "PUT",
            &format!("/table/app/{key}?server=nope"),
            &[],
            b""
        )
        .await
        .status,
        404
    );
    assert_eq!(
        http(stats, "PUT", "/table/app/xyz?server=alpha", &[], b"")
            .await
            .status,
        400
    );
    assert_eq!(rig.get("/table/nobackend").await.status, 404);
    assert_eq!(rig.get("/table/app?table=ticket").await.status, 404);
}

fn tether(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env("TETHER_LOG", "warn")
        .output()
        .expect("the tether binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_table_cli_sets_shows_lists_and_clears() {
    let rig = Rig::start(
        &["alpha", "beta"],
        "admin = true\nadmin-without-auth = true",
    )
    .await;
    let url = format!("http://{}/", rig.stats_addr());
    let id = [0x5a; 32];
    let key = hex(&id);
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            tether(&a)
        })
    };
    let args = |rest: &[&str]| -> Vec<String> {
        let mut v = vec!["table".to_string(), "--stats".to_string(), url.clone()];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };

    for target in ["beta", "alpha"] {
        let (ok, out, err) = run(args(&["set", "app", &key, target])).await.unwrap();
        assert!(ok, "{err}");
        assert!(out.contains(&format!("-> {target}")), "{out}");
        for _ in 0..3 {
            assert_eq!(routed(&rig, &id).await, target);
        }
    }
    let (ok, out, _) = run(args(&["show", "app", &key])).await.unwrap();
    assert!(ok && out.starts_with(&format!("{key} alpha")), "{out}");
    let (ok, out, _) = run(args(&["--json", "list", "app", "--server", "alpha"]))
        .await
        .unwrap();
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total"], 1);
    assert_eq!(v["entries"][0]["key"], key);
    let (ok, out, _) = run(args(&["list", "app", "--server", "beta"]))
        .await
        .unwrap();
    assert!(ok && out.contains("0 entries shown of 0"), "{out}");

    let (ok, out, _) = run(args(&["clear", "app", &key])).await.unwrap();
    assert!(ok && out.contains("was on alpha"), "{out}");
    let (ok, _, err) = run(args(&["show", "app", &key])).await.unwrap();
    assert!(!ok && err.contains("404"), "{err}");

    run(args(&["set", "app", &key, "beta"])).await.unwrap();
    let (ok, out, _) = run(args(&["clear-all", "app"])).await.unwrap();
    assert!(ok && out.contains("cleared 1 entries"), "{out}");
    let (ok, _, err) = run(args(&["set", "app", &key, "nosuch"])).await.unwrap();
    assert!(!ok && err.contains("no server named"), "{err}");
}

/// The value of the unlabelled-by-server metric `name` for backend `app` on `/metrics`.
async fn table_metric(rig: &Rig, name: &str) -> u64 {
    let body = rig.get("/metrics").await.body;
    body.lines()
        .find(|l| l.starts_with(name) && l.contains("backend=\"app\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} for app on /metrics:\n{body}"))
}

#[tokio::test]
async fn entries_leave_the_table_when_they_expire_without_being_asked_for() {
    let rig = Rig::start_with_table(
        &["alpha", "beta"],
        "admin = true\nadmin-without-auth = true",
        "expire = \"1s\"",
    )
    .await;
    let stats = rig.stats_addr();
    for i in 1..=3u8 {
        let key = hex(&[i; 32]);
        let r = http(
            stats,
            "PUT",
            &format!("/table/app/{key}?server=beta"),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(table_metric(&rig, "tether_stick_table_entries").await, 3);
    // Nobody looks the keys up again: the expiry task alone removes them (within a second of
    // their expiry), and counts them as expired.
    tokio::time::sleep(std::time::Duration::from_millis(3_000)).await;
    assert_eq!(table_metric(&rig, "tether_stick_table_entries").await, 0);
    assert_eq!(
        table_metric(&rig, "tether_stick_table_expired_total").await,
        3
    );
}
