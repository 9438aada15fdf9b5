//! The chat screen (issue 14): two panes, history that scrolls, attention (tab title,
//! desktop notifications, mute), group settings, presence on first render, first run,
//! paging of the friends lists, keyboard use, and phones. Browser tests drive headless
//! Chromium (`#[needs(browser)]`: ignored where it is not installed); the rest read pages
//! as a browser without JavaScript does.

use std::time::Duration;

use fantoccini::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    both_backends,
    browser::{self, click, js, settle, wait_for, Driver, WAIT},
    helpers::*,
    integration_test,
};

/// [`browser::wait_until_with`] at the usual [`WAIT`].
async fn wait_until(b: &Client, what: &str, script: &str, args: Vec<Value>) {
    browser::wait_until_with(b, what, script, args, WAIT).await
}

async fn sign_in(b: &Client, app: &TestApp, name: &str) {
    browser::sign_in(b, &app.url(""), name).await;
}

async fn page_client(app: &TestApp, name: &str) -> PageClient {
    let page = app.browser();
    let r = page.sign_in(name, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{name} signs in");
    page
}

async fn group(app: &TestApp, owner: &ApiUser, name: &str, members: &[&str]) -> i64 {
    let r = app
        .post_json(
            &owner.token,
            "/api/group_chats/",
            &json!({ "group_chat_name": name, "usernames": members }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["group_chat_id"]
        .as_i64()
        .unwrap()
}

/// The ids of the messages the page shows, and whether the list reached the beginning.
const LIST_STATE: &str = "var l = document.querySelector('ol.messages');
    var ids = Array.prototype.map.call(l.querySelectorAll('li.message'), function (li) { return li.id; });
    return { ids: ids, beginning: !!l.querySelector('li.beginning'), top: l.scrollTop };";

both_backends! {
    #[needs(browser)]
    async fn browser_history_scrolls_up_through_300_messages_each_once_without_jumping(app) {
        let mut driver = Driver::start().await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        for n in 0..300 {
            let (from, to) = if n % 3 == 0 { (&bob, &alice) } else { (&alice, &bob) };
            let r = app.send_dm(from, to, &format!("message {n}")).await;
            assert_eq!(r.status(), StatusCode::CREATED);
        }
        let b = driver.browser().await;
        sign_in(&b, &app, "alice").await;
        b.goto(&app.url("/chats/@bob")).await.unwrap();
        wait_for(&b, "ol.messages li.message").await;
        let mut rounds = 0;
        loop {
            // Opening at the "New messages" divider may have started a load already.
            wait_until(&b, "no load in flight", "return !document.querySelector('ol.messages[aria-busy]');", vec![]).await;
            let state = js(&b, LIST_STATE, vec![]).await;
            if state["beginning"] == json!(true) {
                break;
            }
            rounds += 1;
            assert!(rounds < 20, "the beginning never came: {state}");
            // Where the oldest message shown sits, before scrolling up to load more.
            let first = state["ids"][0].as_str().unwrap().to_string();
            let count = state["ids"].as_array().unwrap().len();
            js(&b, "var l = document.querySelector('ol.messages'); l.scrollTop = 40;", vec![]).await;
            let before = js(&b, "var l = document.querySelector('ol.messages'); return document.getElementById(arguments[0]).getBoundingClientRect().top - l.getBoundingClientRect().top;", vec![json!(first)]).await;
            wait_until(&b, "an older page loads", "return document.querySelectorAll('ol.messages li.message').length > arguments[0] && !document.querySelector('ol.messages[aria-busy]');", vec![json!(count)]).await;
            let after = js(&b, "var l = document.querySelector('ol.messages'); return document.getElementById(arguments[0]).getBoundingClientRect().top - l.getBoundingClientRect().top;", vec![json!(first)]).await;
            let moved = (before.as_f64().unwrap() - after.as_f64().unwrap()).abs();
            let now = js(&b, LIST_STATE, vec![]).await;
            assert!(moved < 4.0, "the reading position of {first} jumped by {moved}px ({before} -> {after}); {count} shown before, now {} (top {})", now["ids"].as_array().unwrap().len(), now["top"]);
        }
        let state = js(&b, LIST_STATE, vec![]).await;
        let ids: Vec<&str> = state["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let unique: std::collections::HashSet<&str> = ids.iter().copied().collect();
        assert_eq!(ids.len(), 300, "every message shown");
        assert_eq!(unique.len(), 300, "each exactly once");
        let beginning = wait_for(&b, "ol.messages li.beginning").await.text().await.unwrap();
        assert!(beginning.contains("This is the beginning of your chat with bob"), "{beginning}");
        let first_text = wait_for(&b, "ol.messages li.message .content").await.text().await.unwrap();
        assert_eq!(first_text, "message 0");
        b.close().await.unwrap();
    }

    #[needs(browser)]
    async fn the_tab_title_counts_unread_messages_of_chats_not_muted(app) {
        let mut driver = Driver::start().await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        app.befriend(&alice, &bob).await;
        app.befriend(&alice, &carol).await;
        app.send_dm(&carol, &alice, "from a muted chat").await;
        let page = page_client(&app, "alice").await;
        let r = page.post_form("/chats/@carol", "/chats/@carol/mute", &[("muted", "1")]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        // Opening carol's chat read it; one more from carol stays unread but muted.
        app.send_dm(&carol, &alice, "still muted").await;
        let b = driver.browser().await;
        sign_in(&b, &app, "alice").await;
        settle().await;
        assert_eq!(b.title().await.unwrap(), "Chats · Messenger");
        for n in 0..3 {
            app.send_dm(&bob, &alice, &format!("unread {n}")).await;
        }
        wait_until(&b, "(3) in the title", "return document.title === '(3) Chats · Messenger';", vec![]).await;
        // Read in one script: a live update may replace the row between two WebDriver calls.
        wait_until(&b, "carol's chat muted in the list", "var r = document.querySelector(\"#conversation-list li[data-key^='d-'][data-muted]\"); return r !== null && r.getAttribute('data-name') === 'carol';", vec![]).await;
        click(&b, "#conversation-list a[href='/chats/@bob']").await;
        wait_until(&b, "read once open", "return document.title === 'bob · Messenger';", vec![]).await;
        assert!(b.current_url().await.unwrap().path().ends_with("/chats/@bob"));
        b.close().await.unwrap();
    }

    #[needs(browser)]
    async fn a_desktop_notification_names_sender_and_chat_and_opens_it(app) {
        let mut driver = Driver::start().await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        app.befriend(&alice, &bob).await;
        app.befriend(&alice, &carol).await;
        let gid = group(&app, &alice, "trio", &["bob", "carol"]).await;
        app.send_dm(&carol, &alice, "hello").await;
        let page = page_client(&app, "alice").await;
        page.post_form("/chats/@carol", "/chats/@carol/mute", &[("muted", "1")]).await;
        let b = driver.browser().await;
        sign_in(&b, &app, "alice").await;
        // The browser's permission granted, and the tab hidden.
        js(&b, "window.__notes = [];
            window.Notification = function (title, options) {
              var note = { title: title, body: options.body, tag: options.tag, close: function () {} };
              window.__notes.push(note);
              return note;
            };
            window.Notification.permission = 'default';
            window.Notification.requestPermission = function () {
              window.Notification.permission = 'granted';
              return Promise.resolve('granted');
            };
            Object.defineProperty(document, 'visibilityState', { configurable: true, get: function () { return 'hidden'; } });", vec![]).await;
        click(&b, "#notify-toggle").await;
        wait_until(&b, "notifications on", "return document.getElementById('notify-toggle').getAttribute('aria-pressed') === 'true';", vec![]).await;
        settle().await;
        app.send_dm(&carol, &alice, "muted: no notification").await;
        app.post_json(&bob.token, "/api/messages/", &json!({ "content": "in the group", "group_chat_id": gid })).await;
        app.send_dm(&bob, &alice, "are you there?").await;
        // A marker sent last: once its notification is shown, the muted one would have been.
        app.send_dm(&bob, &alice, "marker").await;
        wait_until(&b, "the marker's notification", "return window.__notes.some(function (n) { return n.body === 'marker'; });", vec![]).await;
        let notes = js(&b, "return window.__notes.map(function (n) { return [n.title, n.body, n.tag]; });", vec![]).await;
        assert_eq!(notes, json!([
            ["bob in #trio", "in the group", format!("g-{gid}")],
            ["bob", "are you there?", format!("d-{}", bob.id)],
            ["bob", "marker", format!("d-{}", bob.id)],
        ]), "the muted chat stays quiet");
        // Clicking the notification opens that chat in the pane.
        js(&b, "window.__notes[0].onclick();", vec![]).await;
        wait_until(&b, "the group opens", "return !!document.querySelector('#pane [data-path=\"' + arguments[0] + '\"]');", vec![json!(format!("/chats/g/{gid}"))]).await;
        assert_eq!(b.current_url().await.unwrap().path(), format!("/chats/g/{gid}"));
        b.close().await.unwrap();
    }

    #[needs(browser)]
    async fn renaming_a_group_shows_at_once_in_the_open_chat_its_title_and_the_list(app) {
        let mut driver = Driver::start().await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let gid = group(&app, &alice, "before", &["bob"]).await;
        let b = driver.browser().await;
        sign_in(&b, &app, "bob").await;
        b.goto(&app.url(&format!("/chats/g/{gid}"))).await.unwrap();
        wait_for(&b, "#composer-input").await;
        assert_eq!(b.title().await.unwrap(), "before · Messenger");
        settle().await;
        let r = app.patch_json(&alice.token, &format!("/api/group_chats/{gid}"), &json!({ "name": "after" })).await;
        assert_eq!(r.status(), StatusCode::OK);
        wait_until(&b, "the heading", "return document.querySelector('#chat-title .title-text').textContent === 'after';", vec![]).await;
        wait_until(&b, "the tab title", "return document.title === 'after · Messenger';", vec![]).await;
        wait_until(&b, "the list", "return document.querySelector('#conversation-list li[data-key=\"g-' + arguments[0] + '\"]').getAttribute('data-name') === 'after';", vec![json!(gid)]).await;
        wait_until(&b, "the settings panel", "return document.getElementById('rename-' + arguments[0]).value === 'after';", vec![json!(gid)]).await;
        b.close().await.unwrap();
    }

    async fn presence_is_right_on_first_render(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        app.befriend(&alice, &bob).await;
        app.befriend(&alice, &carol).await;
        app.send_dm(&bob, &alice, "hi").await;
        app.send_dm(&carol, &alice, "hi").await;
        let gid = group(&app, &alice, "trio", &["bob", "carol"]).await;
        // Bob is online: he holds a live stream. Carol is not.
        let _bob_online = app.events(&bob, None).await;
        let page = page_client(&app, "alice").await;
        let online = format!(r#"class="dot presence-{} online""#, bob.id);
        let offline = format!(r#"class="dot presence-{}""#, carol.id);
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut chats = page.get_html("/chats").await;
        while !chats.contains(&online) {
            assert!(tokio::time::Instant::now() < deadline, "bob never showed online:\n{chats}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            chats = page.get_html("/chats").await;
        }
        assert_eq!(chats.matches(&online).count(), 2, "in the list and in \"Start a chat\"");
        assert_eq!(chats.matches(&offline).count(), 2, "carol offline in both");
        assert!(page.get_html("/chats/@bob").await.contains(&online), "the chat's header");
        let group_page = page.get_html(&format!("/chats/g/{gid}")).await;
        assert!(group_page.contains(&online) && group_page.contains(&offline), "the members panel");
        assert!(group_page.contains(r#"<span class="dot online" title="online" aria-hidden="true"></span>"#), "I am online myself");
        let friends = page.get_html("/friends").await;
        assert!(friends.contains(&online) && friends.contains(&offline));
    }

    async fn older_messages_without_javascript_are_a_whole_page(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        for n in 0..60 {
            app.send_dm(&alice, &bob, &format!("message {n}")).await;
        }
        let page = page_client(&app, "bob").await;
        let html = page.get_html("/chats/@alice").await;
        let start = html.find("/chats/@alice/older?before=").expect("a link to older messages");
        let link = &html[start..start + html[start..].find('"').unwrap()];
        let older = page.get_html(link).await;
        assert!(older.contains("<html") && older.contains(r#"id="composer""#), "the whole chat screen");
        assert!(older.contains(r#"<div class="content">message 0</div>"#), "the older page");
        assert!(!older.contains(r#"<div class="content">message 59</div>"#), "not the latest");
        assert!(older.contains("This is the beginning of your chat with alice"));
        assert!(older.contains("Back to the latest messages"));
        assert!(older.contains(" UTC</time>"), "times say their zone without JavaScript");
        // htmx loading in place gets the items alone.
        let fragment = page.client.get(format!("{}{link}", page.base)).header("HX-Request", "true").send().await.unwrap().text().await.unwrap();
        assert!(fragment.trim_start().starts_with("<li class=\"beginning\">"), "{fragment}");
        // Switching chats gets the pane alone; the back button (a history restore) the page.
        let pane = page.client.get(format!("{}/chats/@alice", page.base)).header("HX-Request", "true").header("HX-Target", "pane").send().await.unwrap().text().await.unwrap();
        assert!(pane.trim_start().starts_with("<title>alice · Messenger</title>") && !pane.contains("<html"), "{pane}");
        let restored = page.client.get(format!("{}/chats/@alice", page.base)).header("HX-Request", "true").header("HX-Target", "pane").header("HX-History-Restore-Request", "true").send().await.unwrap().text().await.unwrap();
        assert!(restored.contains("<html"));
    }

    async fn opening_a_chat_with_unread_messages_marks_where_they_start(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        app.befriend(&alice, &bob).await;
        app.befriend(&alice, &carol).await;
        app.send_dm(&alice, &bob, "read by now").await;
        app.send_dm(&bob, &alice, "seen").await;
        let page = page_client(&app, "alice").await;
        page.get_html("/chats/@bob").await;
        let first_unread = app.send_dm(&bob, &alice, "first new").await.json::<Value>().await.unwrap()["message_id"].as_i64().unwrap();
        app.send_dm(&bob, &alice, "second new").await;
        let html = page.get_html("/chats/@bob").await;
        let divider = html.find(r#"id="unread-divider""#).expect("a New messages divider");
        let message = html.find(&format!(r#"id="msg-{first_unread}""#)).unwrap();
        assert!(divider < message && !html[divider..message].contains("class=\"message"), "right before the first unread");
        assert!(!page.get_html("/chats/@bob").await.contains("unread-divider"), "read now");
        // In a group, from my read marker.
        let gid = group(&app, &alice, "trio", &["bob", "carol"]).await;
        app.post_json(&carol.token, "/api/messages/", &json!({ "content": "new in the group", "group_chat_id": gid })).await;
        let html = page.get_html(&format!("/chats/g/{gid}")).await;
        assert!(html.contains(r#"id="unread-divider""#));
    }

    async fn a_first_run_leads_to_finding_people(app) {
        let page = app.browser();
        page.sign_up("newbie").await;
        let html = page.get_html("/chats").await;
        assert!(html.contains("Welcome, newbie!"), "{html}");
        assert!(html.contains("No chats yet"));
        assert!(html.contains("You have no friends here yet"));
        assert!(html.contains(r#"id="people-search""#) && html.contains(r#"hx-get="/friends/search""#), "the search box right there");
        // Adding someone from there answers without the friends page's sections.
        app.user("somebody").await;
        let token = csrf_token(&html);
        let r = page.post_raw("/friends/request", &[("username", "somebody"), ("csrf_token", &token)], &[("HX-Request", "true"), ("X-CSRF-Token", &token), ("HX-Current-URL", &format!("{}/chats", page.base))]).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()["hx-trigger"], "friends-changed");
    }

    async fn muting_is_kept_per_chat_and_leaves_the_unread_count(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        app.befriend(&alice, &bob).await;
        app.befriend(&alice, &carol).await;
        app.send_dm(&bob, &alice, "one").await;
        app.send_dm(&carol, &alice, "two").await;
        let page = page_client(&app, "alice").await;
        assert!(page.get_html("/nav/unread").await.contains(r#"data-count="2""#));
        for _ in 0..2 {
            let r = page.post_form("/chats", "/chats/@bob/mute", &[("muted", "1")]).await;
            assert_eq!(location(&r), "/chats/@bob");
        }
        assert_eq!(app.count("chat_mute").await, 1);
        assert!(page.get_html("/nav/unread").await.contains(r#"data-count="1""#));
        let chats = page.get_html("/chats").await;
        assert!(chats.contains(&format!(r#"data-key="d-{}" data-name="bob" data-href="/chats/@bob" data-muted"#, bob.id)), "{chats}");
        assert!(page.get_html("/chats/@bob").await.contains(r#"aria-pressed="true""#));
        page.post_form("/chats", "/chats/@bob/mute", &[("muted", "0")]).await;
        assert_eq!(app.count("chat_mute").await, 0);
    }

    async fn the_friends_lists_page_past_100(app) {
        let me = app.user("popular").await;
        let mut names = Vec::new();
        for n in 0..101 {
            let friend = app.user(&format!("fan{n:03}")).await;
            app.befriend(&friend, &me).await;
            names.push(friend.username);
        }
        let page = page_client(&app, "popular").await;
        let html = page.get_html("/friends").await;
        assert!(html.contains(r#"Friends <span class="count">101</span>"#));
        assert!(html.contains("fan099") && !html.contains("data-username=\"fan100\""));
        assert!(html.contains(r#"href="/friends?friends_after=fan099""#));
        let more = page.client.get(format!("{}/friends/more?list=friends&after=fan099", page.base)).header("HX-Request", "true").send().await.unwrap().text().await.unwrap();
        assert!(more.contains(r#"data-username="fan100""#) && !more.contains("Show more"), "{more}");
        let rest = page.get_html("/friends?friends_after=fan099").await;
        assert!(rest.contains(r#"data-username="fan100""#) && !rest.contains(r#"data-username="fan000""#));
    }

    async fn group_settings_have_labels_search_and_a_confirmed_leave(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        app.befriend(&alice, &bob).await;
        app.befriend(&alice, &carol).await;
        let gid = group(&app, &alice, "duo", &["bob"]).await;
        let page = page_client(&app, "alice").await;
        let html = page.get_html(&format!("/chats/g/{gid}")).await;
        assert!(html.contains(&format!(r#"<label for="rename-{gid}">Group name</label>"#)));
        assert!(html.contains(&format!(r#"<label for="add-member-{gid}">Add a member</label>"#)));
        assert!(html.contains("<summary>Leave group…</summary>"), "leaving asks first");
        let found = page.get_html(&format!("/chats/g/{gid}/candidates?username=CA")).await;
        assert!(found.contains(r#"aria-label="Add carol""#), "{found}");
        assert!(!page.get_html(&format!("/chats/g/{gid}/candidates?username=b")).await.contains("Add bob"), "members are not offered");
        let r = page.post_form(&format!("/chats/g/{gid}"), &format!("/chats/g/{gid}/members"), &[("username", "carol")]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(page.get_html(&format!("/chats/g/{gid}")).await.contains("Members <span class=\"count\">3</span>"));
    }
}

integration_test! {
    #[needs(browser)]
    async fn browser_one_tab_stop_per_message_list_and_editing_in_place() {
        let mut driver = Driver::start().await;
        let app = spawn_app(Backend::Sqlite).await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        for n in 0..13 {
            app.send_dm(&alice, &bob, &format!("mine {n}")).await;
        }
        let b = driver.browser().await;
        sign_in(&b, &app, "alice").await;
        b.goto(&app.url("/chats/@bob")).await.unwrap();
        wait_for(&b, "#composer-input").await;
        // From the message list, one Tab reaches the message box.
        js(&b, "document.querySelector('ol.messages').focus();", vec![]).await;
        b.active_element()
            .await
            .unwrap()
            .send_keys("\u{E004}")
            .await
            .unwrap();
        let active = js(&b, "return document.activeElement.id;", vec![]).await;
        assert_eq!(active, json!("composer-input"));
        // ↑ picks the last message; Tab reaches its menu button, Enter opens the menu.
        js(&b, "document.querySelector('ol.messages').focus();", vec![]).await;
        let keys = |k: &'static str| {
            let b = b.clone();
            async move {
                b.active_element()
                    .await
                    .unwrap()
                    .send_keys(k)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        };
        keys("\u{E013}").await; // ↑
        let focused = js(&b, "return document.activeElement.className;", vec![]).await;
        assert!(
            focused.as_str().unwrap().contains("message mine"),
            "{focused}"
        );
        keys("\u{E004}").await; // Tab
        keys("\u{E007}").await; // Enter
        let state = js(&b, "var a = document.activeElement; return [a.getAttribute('role'), a.textContent, document.querySelector('.menu-button[aria-expanded=true]') !== null];", vec![]).await;
        assert_eq!(state, json!(["menuitem", "Reply", true]));
        keys("\u{E00C}").await; // Esc closes the menu, back on its button
        let state = js(
            &b,
            "var a = document.activeElement; return [a.className, a.getAttribute('aria-expanded')];",
            vec![],
        )
        .await;
        assert_eq!(state, json!(["menu-button", "false"]));
        keys("\u{E007}").await; // the menu again: Reply, React, Edit
        keys("\u{E015}").await; // ↓
        keys("\u{E015}").await; // ↓
        keys("\u{E007}").await; // Edit
        wait_until(&b, "the edit box", "return document.activeElement.tagName === 'TEXTAREA' && document.activeElement.id.indexOf('edit-') === 0;", vec![]).await;
        keys("\u{E00C}").await; // Esc leaves edit mode unchanged
        wait_until(&b, "back to the message", "return !document.querySelector('li.editing') && document.activeElement.matches('li.message');", vec![]).await;
        keys("\u{E004}").await;
        keys("\u{E007}").await;
        keys("\u{E015}").await;
        keys("\u{E015}").await;
        keys("\u{E007}").await;
        wait_until(
            &b,
            "the edit box again",
            "return document.activeElement.tagName === 'TEXTAREA' && document.activeElement.id.indexOf('edit-') === 0;",
            vec![],
        )
        .await;
        keys(" (fixed)").await;
        keys("\u{E007}").await; // Enter saves
        wait_until(&b, "saved and marked edited", "var li = document.querySelector('ol.messages li.message:last-of-type'); return li.textContent.indexOf('mine 12 (fixed)') >= 0 && li.querySelector('.edited') !== null && li.querySelector('.edited').offsetParent !== null;", vec![]).await;
        b.close().await.unwrap();
    }
}

integration_test! {
    /// Phones: nothing off-screen at 390x844 and 360x640, the header at most a tenth of the
    /// height, the message box on screen.
    #[needs(browser)]
    async fn browser_nothing_is_off_screen_on_phones() {
        let mut driver = Driver::start().await;
        let app = spawn_app(Backend::Sqlite).await;
        let alice = app.user("alice").await;
        let bob = app.user("averyveryverylongusername").await;
        app.befriend(&alice, &bob).await;
        app.send_dm(
            &bob,
            &alice,
            &"a long line of words that must wrap on a phone ".repeat(6),
        )
        .await;
        app.send_dm(
            &bob,
            &alice,
            "https://example.com/a/very/long/link/that/has/no/spaces/in/it/at/all/and/goes/on",
        )
        .await;
        let gid = group(&app, &alice, "a group name", &[&bob.username]).await;
        let b = driver.browser().await;
        sign_in(&b, &app, "alice").await;
        for (w, h) in [(390u32, 844u32), (360, 640)] {
            b.set_window_size(w, h).await.unwrap();
            let size = js(
                &b,
                "return [window.innerWidth, window.innerHeight];",
                vec![],
            )
            .await;
            let (iw, ih) = (size[0].as_f64().unwrap(), size[1].as_f64().unwrap());
            assert!((iw - f64::from(w)).abs() < 20.0, "the window is {size}");
            for path in [
                "/chats".to_string(),
                format!("/chats/@{}", bob.username),
                format!("/chats/g/{gid}"),
                "/friends".to_string(),
                "/profile".to_string(),
            ] {
                b.goto(&app.url(&path)).await.unwrap();
                wait_for(&b, "main").await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                let report = js(&b, "var w = window.innerWidth;
                    var wide = Array.prototype.filter.call(document.querySelectorAll('body *'), function (e) {
                      var r = e.getBoundingClientRect();
                      return r.width > 0 && r.height > 0 && (r.right > w + 1 || r.left < -1) && !e.closest('.visually-hidden, .skip, dialog:not([open])');
                    }).slice(0, 5).map(function (e) { return e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right); });
                    var header = Array.prototype.filter.call(document.querySelectorAll('header.top, .chat-header, .list-header'), function (e) { return e.offsetParent !== null; })
                      .map(function (e) { return e.getBoundingClientRect().height; });
                    var composer = document.querySelector('.composer');
                    return { scroll: document.documentElement.scrollWidth, wide: wide, header: Math.max.apply(null, header.concat([0])),
                             composer: composer ? composer.getBoundingClientRect().bottom : null };", vec![]).await;
                assert!(
                    report["scroll"].as_f64().unwrap() <= iw,
                    "{w}x{h} {path}: scrolls sideways {report}"
                );
                assert_eq!(
                    report["wide"],
                    json!([]),
                    "{w}x{h} {path}: off-screen {report}"
                );
                assert!(
                    report["header"].as_f64().unwrap() <= ih * 0.1,
                    "{w}x{h} {path}: header {report}"
                );
                if let Some(bottom) = report["composer"].as_f64() {
                    assert!(
                        bottom <= ih + 0.5,
                        "{w}x{h} {path}: the message box below the screen {report}"
                    );
                }
            }
        }
        b.close().await.unwrap();
    }
}

/// The serious and critical violations axe-core finds on the page as it is now.
async fn axe_violations(b: &Client, axe: &str) -> Value {
    js(
        b,
        &format!("{axe}\n;window.axe = window.axe || axe;"),
        vec![],
    )
    .await;
    b.execute_async(
        "var done = arguments[arguments.length - 1];
         axe.run(document, { resultTypes: ['violations'] }).then(function (r) {
           done(r.violations.filter(function (v) { return v.impact === 'serious' || v.impact === 'critical'; })
             .map(function (v) { return v.id + ': ' + v.nodes.slice(0, 3).map(function (n) { return n.target.join(' '); }).join(' | '); }));
         }, function (e) { done(['axe failed: ' + e]); });",
        vec![],
    )
    .await
    .unwrap()
}

async fn axe_page(b: &Client, app: &TestApp, axe: &str, path: &str) {
    b.goto(&app.url(path)).await.unwrap();
    wait_for(b, "main").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(axe_violations(b, axe).await, json!([]), "{path}");
}

integration_test! {
    /// axe-core (pinned in package.json, installed by the build) on every page: no serious
    /// or critical violations.
    #[needs(browser)]
    async fn browser_axe_finds_nothing_serious_on_any_page() {
        let mut driver = Driver::start().await;
        let axe_path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/node_modules/axe-core/axe.min.js"
        );
        let axe = std::fs::read_to_string(axe_path).unwrap_or_else(|e| {
            panic!("{axe_path} (installed by the build from package-lock.json): {e}")
        });
        let app = spawn_app(Backend::Sqlite).await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let dave = app.user("dave").await;
        let r = app
            .post(&dave.token, "/api/friends/requests?username=alice")
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let mine = app.send_dm(&alice, &bob, "hello https://example.com").await;
        let mine = mine.json::<Value>().await.unwrap()["message_id"]
            .as_i64()
            .unwrap();
        app.send_dm(&bob, &alice, "hi!").await;
        let edited = app.send_dm(&alice, &bob, "edited later").await;
        let edited = edited.json::<Value>().await.unwrap()["message_id"]
            .as_i64()
            .unwrap();
        app.patch_json(
            &alice.token,
            &format!("/api/messages/{edited}"),
            &json!({ "content": "edited" }),
        )
        .await;
        let gid = group(&app, &alice, "trio", &["bob"]).await;
        app.post_json(
            &bob.token,
            "/api/messages/",
            &json!({ "content": "in the group", "group_chat_id": gid }),
        )
        .await;

        let b = driver.browser().await;
        for path in ["/login", "/signup"] {
            axe_page(&b, &app, &axe, path).await;
        }
        sign_in(&b, &app, "alice").await;
        for path in [
            "/chats".to_string(),
            "/chats/@bob".to_string(),
            format!("/chats/g/{gid}"),
            "/friends".to_string(),
            "/profile".to_string(),
            format!("/messages/{mine}/edit"),
            "/no/such/page".to_string(),
        ] {
            axe_page(&b, &app, &axe, &path).await;
        }
        // A message's menu open, then the message in edit mode, and the shortcuts dialog.
        b.goto(&app.url("/chats/@bob")).await.unwrap();
        click(&b, &format!("#msg-{mine} .menu-button")).await;
        wait_for(&b, &format!("#menu-{mine}:not([hidden])")).await;
        assert_eq!(axe_violations(&b, &axe).await, json!([]), "a menu open");
        click(&b, &format!("#menu-{mine} .menu-edit")).await;
        wait_for(&b, &format!("#edit-{mine}")).await;
        assert_eq!(
            axe_violations(&b, &axe).await,
            json!([]),
            "editing in place"
        );
        b.close().await.unwrap();
        // A first run.
        app.user("newbie").await;
        let b = driver.browser().await;
        sign_in(&b, &app, "newbie").await;
        axe_page(&b, &app, &axe, "/chats").await;
        b.close().await.unwrap();
    }
}

integration_test! {
    /// While reading older messages, new ones do not move the view: a "↓ N new" button
    /// counts them. A draft stays with its chat; "/" filters the list, Alt+↑/↓ switch chats,
    /// "?" lists the shortcuts.
    #[needs(browser)]
    async fn browser_new_messages_while_reading_back_drafts_and_shortcuts() {
        let mut driver = Driver::start().await;
        let app = spawn_app(Backend::Sqlite).await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        app.befriend(&alice, &bob).await;
        app.befriend(&alice, &carol).await;
        app.send_dm(&carol, &alice, "from carol").await;
        for n in 0..45 {
            app.send_dm(&alice, &bob, &format!("line {n}")).await;
        }
        let b = driver.browser().await;
        sign_in(&b, &app, "alice").await;
        b.goto(&app.url("/chats/@bob")).await.unwrap();
        wait_for(&b, "#composer-input").await;
        settle().await;
        let top = js(&b, "var l = document.querySelector('ol.messages'); l.scrollTop = l.scrollHeight - l.clientHeight - 600; return l.scrollTop;", vec![]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.send_dm(&bob, &alice, "new one").await;
        app.send_dm(&bob, &alice, "new two").await;
        wait_until(&b, "the ↓ 2 new button", "var j = document.querySelector('.jump-new'); return !j.hidden && j.textContent.indexOf('2 new') >= 0;", vec![]).await;
        let now = js(
            &b,
            "return document.querySelector('ol.messages').scrollTop;",
            vec![],
        )
        .await;
        assert!(
            (now.as_f64().unwrap() - top.as_f64().unwrap()).abs() < 2.0,
            "the view stayed ({top} -> {now})"
        );
        click(&b, ".jump-new").await;
        wait_until(&b, "at the newest", "var l = document.querySelector('ol.messages'); return document.querySelector('.jump-new').hidden && l.scrollHeight - l.scrollTop - l.clientHeight < 40;", vec![]).await;

        // A draft for bob; "/" then "car" and Enter opens carol's chat.
        wait_for(&b, "#composer-input")
            .await
            .send_keys("draft for bob")
            .await
            .unwrap();
        js(&b, "document.querySelector('ol.messages').focus();", vec![]).await;
        b.active_element()
            .await
            .unwrap()
            .send_keys("/")
            .await
            .unwrap();
        assert_eq!(
            js(&b, "return document.activeElement.id;", vec![]).await,
            json!("chat-filter")
        );
        b.active_element()
            .await
            .unwrap()
            .send_keys("car")
            .await
            .unwrap();
        let shown = js(&b, "return Array.prototype.filter.call(document.querySelectorAll('#conversation-list li.conversation'), function (li) { return !li.hidden; }).map(function (li) { return li.getAttribute('data-name'); });", vec![]).await;
        assert_eq!(shown, json!(["carol"]));
        b.active_element()
            .await
            .unwrap()
            .send_keys("\u{E007}")
            .await
            .unwrap();
        wait_until(
            &b,
            "carol's chat",
            "return !!document.querySelector('#pane [data-path=\"/chats/@carol\"]');",
            vec![],
        )
        .await;
        assert_eq!(
            js(
                &b,
                "return document.getElementById('composer-input').value;",
                vec![]
            )
            .await,
            json!("")
        );
        js(&b, "var f = document.getElementById('chat-filter'); f.value = ''; f.dispatchEvent(new Event('input', { bubbles: true }));", vec![]).await;
        // Alt+↑: the chat above in the list (bob's, the most recent), with its draft back.
        wait_for(&b, "#composer-input")
            .await
            .send_keys("\u{E00A}\u{E013}\u{E000}")
            .await
            .unwrap();
        wait_until(
            &b,
            "bob's chat",
            "return !!document.querySelector('#pane [data-path=\"/chats/@bob\"]');",
            vec![],
        )
        .await;
        wait_until(
            &b,
            "the draft",
            "return document.getElementById('composer-input').value === 'draft for bob';",
            vec![],
        )
        .await;
        assert_eq!(b.current_url().await.unwrap().path(), "/chats/@bob");
        // "?" shows the shortcuts.
        js(&b, "document.querySelector('ol.messages').focus();", vec![]).await;
        b.active_element()
            .await
            .unwrap()
            .send_keys("?")
            .await
            .unwrap();
        wait_until(
            &b,
            "the shortcuts dialog",
            "return document.getElementById('shortcuts').open;",
            vec![],
        )
        .await;
        b.close().await.unwrap();
    }
}
