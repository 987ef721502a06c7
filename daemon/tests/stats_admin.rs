//! Admin actions and authentication on a real daemon: 401 without credentials, 200 with; admin
//! refused without auth even on loopback unless `admin-without-auth` opens it; drain, maint,
//! ready and weight change server state, and the next connections honour it.

mod stats_support;

use stats_support::*;
use std::net::IpAddr;
use tether::stats::auth::{admin_decision, basic_authorization, AdminDecision};

const PASSWORD_ENV: &str = "TETHER_STATS_TEST_PASSWORD";

#[tokio::test]
async fn basic_auth_guards_every_output() {
    // The variable is only read by this test's listener; the name is unique to this file.
    std::env::set_var(PASSWORD_ENV, "pa55:word");
    let rig = Rig::start(
        &["alpha"],
        &format!("admin = true\nauth = {{ user = \"ops\", password-env = \"{PASSWORD_ENV}\" }}"),
    )
    .await;
    let good = basic_authorization("ops", "pa55:word");
    let bad = basic_authorization("ops", "guess");
    for target in ["/", "/;csv", "/;json", "/metrics", "/table/app"] {
        let r = rig.get(target).await;
        assert_eq!(r.status, 401, "{target} without credentials");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"tether stats\"")
        );
        let r = http(
            rig.stats_addr(),
            "GET",
            target,
            &[("Authorization", &bad)],
            b"",
        )
        .await;
        assert_eq!(r.status, 401, "{target} with a wrong password");
        let r = http(
            rig.stats_addr(),
            "GET",
            target,
            &[("Authorization", &good)],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{target} with credentials: {}", r.body);
        assert!(!r.body.contains("pa55"), "the password never appears");
    }
    let r = admin_post(rig.stats_addr(), "b=app&s=alpha&action=maint", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        rig.daemon.runtime().backends["app"].server_states()[0].admin,
        tether_core::server::AdminState::Ready
    );
    let r = admin_post(rig.stats_addr(), "b=app&s=alpha&action=maint", Some(&good)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        rig.daemon.runtime().backends["app"].server_states()[0].admin,
        tether_core::server::AdminState::Maint
    );
}

#[tokio::test]
async fn admin_without_credentials_is_refused_even_on_loopback() {
    // Issue 17 §0.5: any web page the operator opens can reach 127.0.0.1.
    let rig = Rig::start(&["alpha"], "admin = true").await;
    let r = admin_post(rig.stats_addr(), "b=app&s=alpha&action=maint", None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("need authentication"), "{}", r.body);
    let r = http(rig.stats_addr(), "DELETE", "/table/app", &[], b"").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        rig.daemon.runtime().backends["app"].server_states()[0].admin,
        tether_core::server::AdminState::Ready
    );
    assert!(
        !rig.get("/").await.body.contains("<form"),
        "no admin forms shown"
    );
    assert_eq!(admin_decision(true, true, false), AdminDecision::Allowed);
    assert_eq!(admin_decision(true, false, true), AdminDecision::Allowed);
}

#[tokio::test]
async fn admin_disabled_refuses_posts_and_table_edits() {
    let rig = Rig::start(&["alpha"], "").await;
    let r = admin_post(rig.stats_addr(), "b=app&s=alpha&action=drain", None).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("admin = true"), "{}", r.body);
    let r = http(rig.stats_addr(), "DELETE", "/table/app", &[], b"").await;
    assert_eq!(r.status, 403);
}

/// HAProxy's `stats admin if LOCALHOST` / `if { src NET }`: admin actions only from those
/// client networks; any other client sees the page without forms and is refused like a page
/// without admin.
#[tokio::test]
async fn admin_actions_come_only_from_the_allowed_client_networks() {
    let rig = Rig::start(
        &["alpha"],
        "admin = true\nadmin-without-auth = true\nadmin-from = [\"127.0.0.2/32\", \"::1\"]",
    )
    .await;
    let state = || rig.daemon.runtime().backends["app"].server_states()[0].admin;
    let outsider = IpAddr::from([127, 0, 0, 1]);
    let r = admin_post_from(
        outsider,
        rig.stats_addr(),
        "b=app&s=alpha&action=maint",
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(state(), tether_core::server::AdminState::Ready);
    assert!(
        !rig.get("/").await.body.contains("<form"),
        "no forms for 127.0.0.1"
    );
    let allowed = IpAddr::from([127, 0, 0, 2]);
    let r = admin_post_from(
        allowed,
        rig.stats_addr(),
        "b=app&s=alpha&action=maint",
        None,
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(state(), tether_core::server::AdminState::Maint);
}

async fn spread(rig: &Rig, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(rig.connect(PLAIN).await);
    }
    seen.sort();
    seen.dedup();
    seen
}

#[tokio::test]
async fn drain_maint_ready_and_weight_change_routing() {
    let rig = Rig::start(
        &["alpha", "beta"],
        "admin = true\nadmin-without-auth = true",
    )
    .await;
    let stats = rig.stats_addr();
    assert_eq!(spread(&rig, 4).await, ["alpha", "beta"]);

    let r = admin_post(stats, "b=app&s=alpha&action=drain", None).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.header("location").unwrap().starts_with("/;st=DONE"));
    let csv = rig.get("/;csv").await.body;
    assert_eq!(cell(&csv_row(&csv, "app", "alpha"), "status"), "DRAIN");
    assert_eq!(
        spread(&rig, 4).await,
        ["beta"],
        "a draining server takes no balanced traffic"
    );

    let r = admin_post(stats, "b=app&s=beta&action=maint", None).await;
    assert_eq!(r.status, 303);
    admin_post(stats, "b=app&s=alpha&action=ready", None).await;
    let csv = rig.get("/;csv").await.body;
    assert_eq!(cell(&csv_row(&csv, "app", "beta"), "status"), "MAINT");
    assert_eq!(cell(&csv_row(&csv, "app", "alpha"), "status"), "UP");
    assert_eq!(spread(&rig, 4).await, ["alpha"]);

    admin_post(stats, "b=app&s=beta&action=ready", None).await;
    let r = admin_post(stats, "b=app&s=alpha&action=weight&weight=0", None).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        cell(
            &csv_row(&rig.get("/;csv").await.body, "app", "alpha"),
            "weight"
        ),
        "0"
    );
    assert_eq!(spread(&rig, 4).await, ["beta"]);

    // The page shows the result banner after the redirect.
    let page = rig.get(r.header("location").unwrap()).await;
    assert!(page.body.contains("last action: DONE"), "{}", page.body);

    // Unknown names and bad actions are refused and change nothing.
    let r = admin_post(stats, "b=app&s=gamma&action=maint", None).await;
    assert_eq!(r.status, 400);
    let r = admin_post(stats, "b=app&s=beta&action=explode", None).await;
    assert_eq!(r.status, 400);
    assert_eq!(spread(&rig, 2).await, ["beta"]);
}

#[tokio::test]
async fn after_a_reload_the_listener_shows_and_acts_on_the_new_runtime() {
    let mut rig = Rig::start(
        &["alpha", "beta"],
        "admin = true\nadmin-without-auth = true",
    )
    .await;
    let text = rig.text.replace("name = \"beta\"", "name = \"delta\"");
    let config = tether_core::config::load_toml("reloaded.toml", &text).unwrap();
    let new = tether_core::engine::runtime::build(&config, Some(rig.daemon.runtime())).unwrap();
    rig.daemon.reload(new).await.unwrap();
    let csv = rig.get("/;csv").await.body;
    assert!(
        csv.contains("app,delta,") && !csv.contains("app,beta,"),
        "{csv}"
    );
    let r = admin_post(rig.stats_addr(), "b=app&s=delta&action=maint", None).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        rig.daemon.runtime().backends["app"].server_states()[1].admin,
        tether_core::server::AdminState::Maint
    );
    for _ in 0..3 {
        assert_eq!(rig.connect(PLAIN).await, "alpha");
    }
}
