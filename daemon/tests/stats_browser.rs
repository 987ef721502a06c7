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

/// Headless Chromium with the flags every run here needs, then `extra`, then `url`; retried a
/// few times because a loaded machine occasionally gets nothing from a headless start.
fn chromium(profile: &Path, extra: &[&str], url: &str, ok: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install it (apt-get install -y chromium); .ci/run does"
    );
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
            .args(extra)
            .arg(url)
            .output()
            .expect("chromium runs");
        if out.status.success() && ok(&out.stdout) {
            return out.stdout;
        }
        last = format!(
            "exit {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    panic!("chromium rendered nothing in 3 attempts: {last}");
}

fn dump_dom(profile: &Path, url: &str) -> String {
    let out = chromium(profile, &["--dump-dom"], url, |o| !o.is_empty());
    String::from_utf8_lossy(&out).into_owned()
}

/// A PNG screenshot of `url`, decoded to RGB rows.
fn screenshot(profile: &Path, url: &str) -> (u32, u32, Vec<[u8; 3]>) {
    let file = profile.join("shot.png");
    let arg = format!("--screenshot={}", file.display());
    let _ = std::fs::remove_file(&file);
    chromium(profile, &[&arg, "--window-size=1280,800"], url, |_| {
        file.exists()
    });
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&file).unwrap()));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let step = info.color_type.samples();
    let pixels = buf[..info.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, pixels)
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

/// The page must look like a stats page, not merely contain the words: a screenshot that is
/// blank, unstyled or missing the state colours fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screenshot_shows_the_title_bar_and_each_state_in_its_colour() {
    let rig = Rig::start(&["alpha", "beta", "gamma"], "").await;
    let be = &rig.daemon.runtime().backends["app"];
    be.set_admin(
        tether_core::ServerId(1),
        Some(tether_core::server::AdminState::Maint),
        None,
    );
    be.set_admin(
        tether_core::ServerId(2),
        Some(tether_core::server::AdminState::Drain),
        None,
    );
    let url = format!("http://{}/", rig.stats_addr());
    let scratch = ScratchDir::create("stats-shot").unwrap();
    let profile = scratch.path().join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    let (w, h, pixels) = tokio::task::spawn_blocking(move || screenshot(&profile, &url))
        .await
        .unwrap();
    let count = |rgb: [u8; 3]| pixels.iter().filter(|p| **p == rgb).count();
    let white = count([255, 255, 255]);
    let area = (w * h) as usize;
    let colours = [
        ("title bar #20466e", [0x20, 0x46, 0x6e]),
        ("header cells #20d0d0", [0x20, 0xd0, 0xd0]),
        ("backend bar #b00040", [0xb0, 0x00, 0x40]),
        ("UP rows #c0ffc0", [0xc0, 0xff, 0xc0]),
        ("MAINT rows #c0c0ff", [0xc0, 0xc0, 0xff]),
        ("DRAIN rows #ffd080", [0xff, 0xd0, 0x80]),
    ];
    let seen: Vec<String> = colours
        .iter()
        .map(|(what, rgb)| format!("{what}: {} px", count(*rgb)))
        .collect();
    assert!(
        white < area * 9 / 10,
        "a mostly blank page ({white} of {area} px white); {seen:?}"
    );
    for (what, rgb) in colours {
        // Each is at least a row of cells: hundreds of pixels, not a stray one.
        assert!(
            count(rgb) > 500,
            "{what} missing from the screenshot: {seen:?}"
        );
    }
}
