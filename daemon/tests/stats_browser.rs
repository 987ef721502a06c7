//! The stats page in a real browser (headless Chromium): it renders every server with its state;
//! its admin form copied onto another page (a `file://` one, `Origin: null`) and clicked there is
//! refused (issue 17 §0.5: cross-site request forgery), while the same form posted from the
//! page's own origin, token included, changes the server's state.
//!
//! CI installs Debian's `chromium` (see `.ci/run`); without it this test fails and says so.

mod stats_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use stats_support::*;
use tether_testbed::ScratchDir;

const CHROMIUM: &str = "/usr/bin/chromium";

fn dump_dom(profile: &Path, url: &str) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install it (apt-get install -y chromium); .ci/run does"
    );
    // A loaded machine occasionally gets an empty dump from a headless start; a real page
    // rendering is what is under test, so try a few starts before failing.
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        let out = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(url)
            .output()
            .expect("chromium runs");
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && !dom.is_empty() {
            return dom;
        }
        last = format!(
            "exit {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    panic!("chromium rendered nothing in 3 attempts: {last}");
}

/// The text of the status cell in the row of `server`.
fn status_of(dom: &str, server: &str) -> String {
    let start = dom
        .find(&format!("id=\"srv-app-{server}\""))
        .unwrap_or_else(|| panic!("no row for {server} in\n{dom}"));
    let row = &dom[start..];
    let cell = row.find("class=\"status\">").unwrap() + "class=\"status\">".len();
    row[cell..cell + row[cell..].find('<').unwrap()].to_string()
}

/// The value of the hidden input `name` in a rendered form.
fn hidden_value(form: &str, name: &str) -> String {
    let at = form
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in {form}"))
        + format!("name=\"{name}\" value=\"").len();
    form[at..at + form[at..].find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_states_and_drives_an_admin_form() {
    let rig = Rig::start(
        &["alpha", "beta"],
        "admin = true\nadmin-without-auth = true",
    )
    .await;
    let url = format!("http://{}/", rig.stats_addr());
    let scratch = ScratchDir::create("stats-browser").unwrap();
    let profile = scratch.path().join("profile");
    std::fs::create_dir_all(&profile).unwrap();

    let (p, u) = (profile.clone(), url.clone());
    let dom = tokio::task::spawn_blocking(move || dump_dom(&p, &u))
        .await
        .unwrap();
    assert!(dom.contains("tether statistics"), "{dom}");
    assert!(status_of(&dom, "alpha").starts_with("UP"));
    assert!(status_of(&dom, "beta").starts_with("UP"));

    // Take beta's admin form exactly as the browser parsed it, point it at the listener, and have
    // Chromium click its "drain" button from another page: a real cross-site form submission.
    let start = dom.find("id=\"srv-app-beta\"").unwrap();
    let form_start = start + dom[start..].find("<form").unwrap();
    let form_end = form_start + dom[form_start..].find("</form>").unwrap() + "</form>".len();
    let form = &dom[form_start..form_end];
    assert!(
        form.contains("method=\"post\"") && form.contains("action=\"/\""),
        "{form}"
    );
    assert!(
        form.contains("name=\"b\" value=\"app\"") && form.contains("name=\"s\" value=\"beta\""),
        "{form}"
    );
    let token = hidden_value(form, "token");
    let cross_site = form.replacen("action=\"/\"", &format!("action=\"{url}\""), 1);
    let page = scratch.path().join("click.html");
    std::fs::write(
        &page,
        format!(
            "<!DOCTYPE html><html><body>{cross_site}<script>\
             window.addEventListener('load', () => document.querySelector('button[value=drain]').click());\
             </script></body></html>"
        ),
    )
    .unwrap();
    let p = profile.clone();
    let page_url = format!("file://{}", page.display());
    let after = tokio::task::spawn_blocking(move || dump_dom(&p, &page_url))
        .await
        .unwrap();
    assert!(
        after.contains("Origin null"),
        "the browser's cross-site post is refused:\n{after}"
    );
    let states = rig.daemon.runtime().backends["app"].server_states();
    assert_eq!(
        states[1].admin,
        tether_core::server::AdminState::Ready,
        "a cross-site form drained beta"
    );

    // The same form from the page's own origin, as the browser sends it (Origin, urlencoded
    // fields, the token it rendered): applied, with the redirect back to the page.
    let origin = format!("http://{}", rig.stats_addr());
    let r = http(
        rig.stats_addr(),
        "POST",
        "/",
        &[
            ("Origin", &origin),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        format!("b=app&s=beta&token={token}&action=drain").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let p = profile.clone();
    let location = format!(
        "{url}{}",
        r.header("location").unwrap().trim_start_matches('/')
    );
    let after = tokio::task::spawn_blocking(move || dump_dom(&p, &location))
        .await
        .unwrap();
    assert!(after.contains("last action: DONE"), "{after}");
    assert!(status_of(&after, "beta").starts_with("DRAIN"), "{after}");
    assert!(status_of(&after, "alpha").starts_with("UP"));
    let states = rig.daemon.runtime().backends["app"].server_states();
    assert_eq!(states[1].admin, tether_core::server::AdminState::Drain);

    // And the daemon honours it: new connections avoid beta.
    for _ in 0..4 {
        assert_eq!(rig.connect(PLAIN).await, "alpha");
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}
