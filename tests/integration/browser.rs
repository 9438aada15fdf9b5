//! The main flows in a real browser: headless Chromium from Debian, driven over
//! WebDriver (chromedriver) with fantoccini. Each test user gets their own browser.

use std::{process::Stdio, time::Duration};

use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use serde_json::json;

use crate::{
    both_backends,
    harness::{chromedriver, find_program},
    helpers::*,
    integration_test,
};

/// A chromedriver process for one test; killed when dropped.
pub struct Driver {
    child: std::process::Child,
    port: u16,
    profiles: Vec<tempfile::TempDir>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver. Tests that call this declare `#[needs(browser)]`: the harness
    /// ignores them where chromedriver is missing (and fails them in CI).
    pub async fn start() -> Self {
        let driver = chromedriver().expect("chromedriver is installed (#[needs(browser)])");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self {
                    child,
                    port,
                    profiles: Vec::new(),
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromedriver did not start");
    }

    /// A new headless Chromium with a fresh profile.
    pub async fn browser(&mut self) -> Client {
        self.browser_with(&[]).await
    }

    /// A new headless Chromium with a fresh profile and these extra flags.
    pub async fn browser_with(&mut self, extra_flags: &[&str]) -> Client {
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--window-size=1200,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.extend(extra_flags.iter().map(|f| f.to_string()));
        if let Ok(extra) = std::env::var("CHROMIUM_FLAGS") {
            args.extend(extra.split_whitespace().map(String::from));
        }
        let mut options = json!({ "args": args });
        if let Some(binary) = find_program("chromium", "CHROMIUM") {
            options["binary"] = json!(binary);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        self.profiles.push(profile);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

/// How long a page gets to show something: generous, as browser tests share two cores.
pub const WAIT: Duration = Duration::from_secs(20);

/// The element `css` selects, once the page shows it; on a timeout the panic names the page
/// and what it says, so that a failure in CI explains itself.
pub async fn wait_for(b: &Client, css: &str) -> Element {
    match b.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
        Ok(element) => element,
        Err(e) => panic!("{css}: {e}\n{}", page_says(b).await),
    }
}

/// Polls `script` (a function body that returns) until it returns `true`.
pub async fn wait_until(b: &Client, what: &str, script: &str, wait: Duration) {
    wait_until_with(b, what, script, vec![], wait).await
}

/// [`wait_until`] for a script that reads `arguments` (`args`); a timeout names what the
/// script returned last.
pub async fn wait_until_with(
    b: &Client,
    what: &str,
    script: &str,
    args: Vec<serde_json::Value>,
    wait: Duration,
) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let returned = b.execute(script, args.clone()).await;
        if matches!(returned, Ok(serde_json::Value::Bool(true))) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("never: {what} (got {returned:?})\n{}", page_says(b).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `script` (a function body; `arguments` are `args`) and returns its value.
pub async fn js(b: &Client, script: &str, args: Vec<serde_json::Value>) -> serde_json::Value {
    b.execute(script, args)
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Where the page is and its visible text, for failure messages.
async fn page_says(b: &Client) -> String {
    let url = b
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_default();
    let text = b
        .execute(
            "return document.body ? document.body.innerText : ''",
            vec![],
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    format!("page {url} says:\n{text}")
}

/// Signs in through the form and waits for the chat list.
pub async fn sign_in(b: &Client, base: &str, name: &str) {
    b.goto(&format!("{base}/login")).await.unwrap();
    fill(b, "#login", name).await;
    fill(b, "#password", PASSWORD).await;
    click(b, "form button[type=submit]").await;
    wait_for_text(b, "h1", "Chats").await;
}

/// Waits until the page's text contains `text`.
pub async fn wait_for_text(b: &Client, css: &str, text: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(el) = b.find(Locator::Css(css)).await {
            if el.text().await.unwrap_or_default().contains(text) {
                return;
            }
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{css} never showed {text:?}; {}", page_says(b).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn fill(b: &Client, css: &str, value: &str) {
    let el = wait_for(b, css).await;
    el.clear().await.ok();
    el.send_keys(value).await.unwrap();
}

/// Clicks the element `css` finds. A live update may replace it between finding and
/// clicking (a stale element): it is found again, as a user would click the new one.
pub async fn click(b: &Client, css: &str) {
    for _ in 0..10 {
        match wait_for(b, css).await.click().await {
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other.unwrap(),
        }
    }
    panic!("{css} kept being replaced before it could be clicked");
}

async fn sign_up(b: &Client, app: &TestApp, name: &str) {
    b.goto(&app.url("/signup")).await.unwrap();
    fill(b, "#username", name).await;
    fill(b, "#email", &format!("{name}@example.com")).await;
    fill(b, "#password", PASSWORD).await;
    fill(b, "#password_again", PASSWORD).await;
    click(b, "form button[type=submit]").await;
    wait_for_text(b, "h1", "Chats").await;
}

async fn current_path(b: &Client) -> String {
    b.current_url().await.unwrap().path().to_string()
}

/// Gives the page's live stream a moment to connect before the other side acts.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

integration_test! {
    #[needs(browser)]
    async fn the_home_page_loads_and_offers_sign_in() {
        let mut driver = Driver::start().await;
        let app = spawn_app(Backend::Sqlite).await;
        let b = driver.browser().await;
        b.goto(&app.url("/")).await.unwrap();
        assert_eq!(current_path(&b).await, "/login");
        let link = wait_for(&b, "a[href='/login']").await;
        assert_eq!(link.text().await.unwrap(), "Sign in");
        b.close().await.unwrap();
    }
}

both_backends! {
    #[needs(browser)]
    async fn browser_sign_up_sign_out_sign_in_and_return_to_the_page_asked_for(app) {
        let mut driver = Driver::start().await;
        let b = driver.browser().await;
        sign_up(&b, &app, "browseruser").await;
        assert_eq!(current_path(&b).await, "/chats");
        click(&b, "nav form button").await;
        wait_for_text(&b, "h1", "Sign in").await;
        // A page behind sign-in sends us to sign in, then back.
        b.goto(&app.url("/friends")).await.unwrap();
        wait_for_text(&b, "h1", "Sign in").await;
        fill(&b, "#login", "browseruser").await;
        fill(&b, "#password", "Wrong1password").await;
        click(&b, "form button[type=submit]").await;
        wait_for_text(&b, "#login-error", "Incorrect email, username or password.").await;
        fill(&b, "#password", PASSWORD).await;
        click(&b, "form button[type=submit]").await;
        wait_for_text(&b, "h1", "Add a friend").await;
        assert_eq!(current_path(&b).await, "/friends");
        b.close().await.unwrap();
    }

    #[needs(browser)]
    async fn browser_alice_finds_bob_and_bob_accepts_live(app) {
        let mut driver = Driver::start().await;
        let alice = driver.browser().await;
        let bob = driver.browser().await;
        sign_up(&alice, &app, "alice").await;
        sign_up(&bob, &app, "bobby").await;
        bob.goto(&app.url("/friends")).await.unwrap();
        wait_for(&bob, "#received-list").await;
        settle().await;
        alice.goto(&app.url("/friends")).await.unwrap();
        fill(&alice, "#friend-search", "bob").await;
        click(&alice, "#search-list button[aria-label='Add bobby']").await;
        wait_for_text(&alice, "#sent-list", "bobby").await;
        wait_for_text(&alice, "#search-list", "Pending").await;
        // Bob sees the request and the badge without reloading.
        wait_for_text(&bob, "#received-list", "alice").await;
        wait_for_text(&bob, "#nav-badge", "1").await;
        click(&bob, "#received-list button[aria-label='Accept alice']").await;
        wait_for_text(&bob, "#friends-list", "alice").await;
        wait_for_text(&alice, "#friends-list", "bobby").await;
        alice.close().await.unwrap();
        bob.close().await.unwrap();
    }

    #[needs(browser)]
    async fn browser_a_chat_is_live_escaped_and_seen(app) {
        let mut driver = Driver::start().await;
        let alice_api = app.user("alice").await;
        let bob_api = app.user("bob").await;
        app.befriend(&alice_api, &bob_api).await;
        let alice = driver.browser().await;
        let bob = driver.browser().await;
        for (b, name) in [(&alice, "alice"), (&bob, "bob")] {
            sign_in(b, &app.url(""), name).await;
        }
        alice.goto(&app.url("/chats/@bob")).await.unwrap();
        bob.goto(&app.url("/chats/@alice")).await.unwrap();
        wait_for(&bob, "#composer-input").await;
        settle().await;
        fill(&alice, "#composer-input", "hello <b>bob</b>").await;
        wait_for(&alice, "#composer-input").await.send_keys("\u{E007}").await.unwrap(); // Enter sends
        wait_for_text(&bob, "ol.messages", "hello <b>bob</b>").await;
        assert!(bob.find(Locator::Css("ol.messages b")).await.is_err(), "shown as text, not markup");
        // The composer cleared and kept focus.
        let value = alice.find(Locator::Id("composer-input")).await.unwrap().prop("value").await.unwrap();
        assert_eq!(value.as_deref(), Some(""));
        fill(&bob, "#composer-input", "hi alice").await;
        click(&bob, "#composer button[type=submit]").await;
        wait_for_text(&alice, "ol.messages", "hi alice").await;
        wait_for_text(&bob, &format!("#seen-d-{}", alice_api.id), "Seen").await;
        // Reloading shows the same history, once each.
        alice.refresh().await.unwrap();
        wait_for_text(&alice, "ol.messages", "hi alice").await;
        let count = alice.find_all(Locator::Css("ol.messages li.message")).await.unwrap().len();
        assert_eq!(count, 2);
        alice.close().await.unwrap();
        bob.close().await.unwrap();
    }
}

integration_test! {
    #[needs(browser)]
    async fn browser_a_three_person_group_chat_is_live() {
        let mut driver = Driver::start().await;
        let app = spawn_app(Backend::Sqlite).await;
        let users = [
            app.user("gina").await,
            app.user("hank").await,
            app.user("ivy").await,
        ];
        app.befriend(&users[0], &users[1]).await;
        app.befriend(&users[0], &users[2]).await;
        let created = app
            .post_json(
                &users[0].token,
                "/api/group_chats/",
                &json!({ "group_chat_name": "trio", "usernames": ["hank", "ivy"] }),
            )
            .await;
        let gid = created.json::<serde_json::Value>().await.unwrap()["group_chat_id"]
            .as_i64()
            .unwrap();
        let mut browsers = Vec::new();
        for u in &users {
            let b = driver.browser().await;
            sign_in(&b, &app.url(""), &u.username).await;
            b.goto(&app.url(&format!("/chats/g/{gid}"))).await.unwrap();
            wait_for(&b, "#composer-input").await;
            browsers.push(b);
        }
        settle().await;
        for (i, b) in browsers.iter().enumerate() {
            fill(
                b,
                "#composer-input",
                &format!("hello from {}", users[i].username),
            )
            .await;
            click(b, "#composer button[type=submit]").await;
            for other in &browsers {
                wait_for_text(
                    other,
                    "ol.messages",
                    &format!("hello from {}", users[i].username),
                )
                .await;
            }
        }
        wait_for_text(&browsers[0], "#members-panel", "ivy").await;
        for b in browsers {
            b.close().await.unwrap();
        }
    }
}
