//! Richer conversations: replies, reactions, mentions and formatting, through the API,
//! the pages and the live stream; and that a page of them costs no extra queries.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{both_backends, helpers::*, integration_test};

async fn body(r: reqwest::Response) -> (StatusCode, Value) {
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Makes them friends unless they are already.
pub(crate) async fn befriend_once(app: &TestApp, a: &ApiUser, b: &ApiUser) {
    let (_, friends) = body(app.get(&a.token, "/api/friends/?limit=100").await).await;
    let already = friends["results"]
        .as_array()
        .is_some_and(|l| l.iter().any(|f| f["username"] == b.username.as_str()));
    if !already {
        app.befriend(a, b).await;
    }
}

/// A group of `owner` and `members` (each befriended by the owner first).
pub(crate) async fn group(app: &TestApp, owner: &ApiUser, members: &[&ApiUser], name: &str) -> i64 {
    for m in members {
        befriend_once(app, owner, m).await;
    }
    let names: Vec<&str> = members.iter().map(|m| m.username.as_str()).collect();
    let (s, g) = body(
        app.post_json(
            &owner.token,
            "/api/group_chats/",
            &json!({ "group_chat_name": name, "usernames": names }),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    g["group_chat_id"].as_i64().unwrap()
}

async fn to_group(app: &TestApp, from: &ApiUser, group: i64, content: &str) -> (StatusCode, Value) {
    body(
        app.post_json(
            &from.token,
            "/api/messages/",
            &json!({ "content": content, "group_chat_id": group }),
        )
        .await,
    )
    .await
}

async fn reply(
    app: &TestApp,
    from: &ApiUser,
    to: Result<&ApiUser, i64>,
    original: i64,
    content: &str,
) -> (StatusCode, Value) {
    let (path, group) = match to {
        Ok(user) => (
            format!("/api/messages/?addressee_username={}", user.username),
            Value::Null,
        ),
        Err(g) => ("/api/messages/".to_string(), json!(g)),
    };
    body(
        app.post_json(
            &from.token,
            &path,
            &json!({ "content": content, "group_chat_id": group, "reply_to_message_id": original }),
        )
        .await,
    )
    .await
}

async fn signed_in(app: &TestApp, user: &ApiUser) -> PageClient {
    let page = app.browser();
    let r = page.sign_in(&user.email, PASSWORD).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "sign-in of {}",
        user.username
    );
    page
}

/// An htmx form post from a page (the CSRF token from `token_page`).
async fn htmx_post(
    page: &PageClient,
    token_page: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let token = csrf_token(&page.get_html(token_page).await);
    page.post_raw(
        path,
        fields,
        &[("hx-request", "true"), ("x-csrf-token", &token)],
    )
    .await
}

both_backends! {
    async fn a_reply_quotes_its_original_and_survives_its_deletion(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        app.befriend(&alice, &bob).await;
        app.befriend(&alice, &carol).await;
        let (_, original) = body(app.send_dm(&alice, &bob, "Lunch at noon?\nThe usual place").await).await;
        let original_id = original["message_id"].as_i64().unwrap();
        assert_eq!(original["reply_to_message_id"], Value::Null, "every message has the field");
        let (s, answer) = reply(&app, &bob, Ok(&alice), original_id, "Yes!").await;
        assert_eq!(s, StatusCode::CREATED, "{answer}");
        assert_eq!(answer["reply_to_message_id"].as_i64(), Some(original_id));
        assert_eq!(answer["reply_to"]["sender_username"], "alice");
        assert_eq!(answer["reply_to"]["excerpt"], "Lunch at noon?…");
        // History carries it too, for both sides.
        let (_, page) = body(app.get(&alice.token, "/api/messages/?friend_username=bob&limit=10").await).await;
        let newest = &page["results"][0];
        assert_eq!(newest["reply_to_message_id"].as_i64(), Some(original_id));
        assert_eq!(newest["reply_to"]["deleted"], false);
        assert!(page["results"].as_array().unwrap().iter().all(|m| m.get("reply_to_message_id").is_some()));

        // A message of another conversation, or none at all: 404 and nothing sent.
        let (_, elsewhere) = body(app.send_dm(&alice, &carol, "secret plans").await).await;
        let before = app.count("message").await;
        let (s, _) = reply(&app, &bob, Ok(&alice), elsewhere["message_id"].as_i64().unwrap(), "leak?").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = reply(&app, &bob, Ok(&alice), 999_999, "to nothing").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let g = group(&app, &alice, &[&carol], "ab").await;
        let (s, _) = reply(&app, &alice, Err(g), original_id, "cross-chat").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "a direct message cannot be answered in a group");
        assert_eq!(app.count("message").await, before, "nothing stored by refused replies");

        // The page shows the quote, linked to the original.
        let page = signed_in(&app, &bob).await;
        let html = page.get_html("/chats/@alice").await;
        assert!(html.contains(&format!(r##"class="reply-quote" href="#msg-{original_id}" data-reply-to="{original_id}""##)), "{html}");
        assert!(html.contains("Lunch at noon?…"));
        assert!(html.contains(r#"class="menu-reply reply-btn""#), "Reply is in the message menu");

        // The original deleted: the quote says so, in the API and on the page.
        assert_eq!(app.delete(&alice.token, &format!("/api/messages/{original_id}")).await.status(), StatusCode::OK);
        let (_, page_json) = body(app.get(&bob.token, "/api/messages/?friend_username=alice&limit=10").await).await;
        assert_eq!(page_json["results"][0]["reply_to"]["deleted"], true);
        assert_eq!(page_json["results"][0]["reply_to_message_id"].as_i64(), Some(original_id));
        let html = page.get_html("/chats/@alice").await;
        assert!(html.contains("message deleted"), "{html}");
    }

    async fn a_reply_sent_from_the_page_quotes_its_original(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let (_, original) = body(app.send_dm(&alice, &bob, "ping").await).await;
        let id = original["message_id"].as_i64().unwrap().to_string();
        let page = signed_in(&app, &bob).await;
        let r = htmx_post(&page, "/chats/@alice", "/chats/@alice/messages", &[("content", "pong"), ("reply_to_message_id", &id)]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let fragment = r.text().await.unwrap();
        assert!(fragment.contains(&format!(r#"data-reply-to="{id}""#)), "{fragment}");
        let r = htmx_post(&page, "/chats/@alice", "/chats/@alice/messages", &[("content", "x"), ("reply_to_message_id", "999999")]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = htmx_post(&page, "/chats/@alice", "/chats/@alice/messages", &[("content", "y"), ("reply_to_message_id", "")]).await;
        assert_eq!(r.status(), StatusCode::OK, "an empty field is no reply");
    }

    async fn reactions_toggle_count_who_and_arrive_live(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        let g = group(&app, &alice, &[&bob, &carol], "crew").await;
        let (_, m) = to_group(&app, &alice, g, "We won!").await;
        let id = m["message_id"].as_i64().unwrap();
        let mut alice_events = app.events(&alice, None).await;
        let react = |user: &ApiUser, emoji: &str| {
            let (app, token, emoji) = (&app, user.token.clone(), emoji.to_string());
            async move { body(app.post_json(&token, &format!("/api/messages/{id}/reactions"), &json!({ "emoji": emoji })).await).await }
        };
        let (s, r) = react(&bob, "👍").await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        assert_eq!(react(&bob, "👍").await.0, StatusCode::OK, "the same reaction twice is one");
        assert_eq!(react(&carol, "👍🏽").await.0, StatusCode::CREATED);
        assert_eq!(react(&carol, "👍").await.0, StatusCode::CREATED);
        // `❤` and `❤️` are one emoji.
        assert_eq!(react(&alice, "❤").await.0, StatusCode::CREATED);
        let (s, r) = react(&bob, "❤️").await;
        assert_eq!(s, StatusCode::CREATED);
        let list = r["reactions"].as_array().unwrap();
        let summary: Vec<(String, u64)> = list.iter().map(|r| (r["emoji"].as_str().unwrap().to_string(), r["count"].as_u64().unwrap())).collect();
        assert_eq!(summary, [("👍".to_string(), 2), ("👍🏽".to_string(), 1), ("❤️".to_string(), 2)]);
        let thumbs: Vec<&str> = list[0]["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
        assert_eq!(thumbs, ["bob", "carol"]);

        // Live: everyone in the chat hears each change with the new counts.
        let e = alice_events.next_of(&["reaction"], Duration::from_secs(10)).await.expect("a reaction event");
        assert_eq!(e.json()["message_id"].as_i64(), Some(id));
        assert_eq!(e.json()["emoji"], "👍");

        // Bad emoji: 422, nothing stored.
        let stored = app.count("message_reaction").await;
        for bad in ["", "ab", "👍👍", ":+1:", "<b>", "1"] {
            assert_eq!(react(&bob, bad).await.0, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        }
        assert_eq!(app.count("message_reaction").await, stored);

        // Taking one back; the list and the message objects agree.
        let r = app.delete(&bob.token, &format!("/api/messages/{id}/reactions/{}", urlencode("👍"))).await;
        assert_eq!(r.status(), StatusCode::OK);
        let (_, listed) = body(app.get(&carol.token, &format!("/api/messages/{id}/reactions")).await).await;
        assert_eq!(listed["reactions"][0]["count"], 1);
        let (_, history) = body(app.get(&carol.token, &format!("/api/group_chats/{g}/messages?limit=10")).await).await;
        assert_eq!(history["results"][0]["reactions"], listed["reactions"]);

        // At most 20 different emoji on one message; one already there can still be added.
        let more = ["😀", "😃", "😄", "😁", "😆", "😅", "🤣", "😊", "😇", "🙂", "🙃", "😉", "😌", "😍", "🥰", "😘", "😗"];
        for e in more {
            assert_eq!(react(&alice, e).await.0, StatusCode::CREATED, "{e}");
        }
        let (s, r) = react(&alice, "🚀").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
        assert_eq!(react(&bob, "😀").await.0, StatusCode::CREATED);

        // Someone who left sees nothing of it any more.
        assert_eq!(app.post(&carol.token, &format!("/api/group_chats/{g}/leave")).await.status(), StatusCode::OK);
        assert_eq!(react(&carol, "🎉").await.0, StatusCode::NOT_FOUND);
        assert_eq!(app.get(&carol.token, &format!("/api/messages/{id}/reactions")).await.status(), StatusCode::NOT_FOUND);
        let outsider = app.user("outsider").await;
        assert_eq!(react(&outsider, "🎉").await.0, StatusCode::NOT_FOUND);
        assert_eq!(react(&bob, "🎉").await.0, StatusCode::UNPROCESSABLE_ENTITY, "still 20 at most");
    }

    async fn the_reaction_button_toggles_and_the_stream_updates_the_page(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let (_, m) = body(app.send_dm(&alice, &bob, "hello").await).await;
        let id = m["message_id"].as_i64().unwrap();
        let page = signed_in(&app, &bob).await;
        let html = page.get_html("/chats/@alice").await;
        assert!(html.contains(&format!(r#"id="reactions-{id}""#)), "{html}");
        assert!(html.contains(r#"aria-label="React with 👍""#));
        let r = htmx_post(&page, "/chats/@alice", &format!("/messages/{id}/react"), &[("emoji", "🎉")]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let fragment = r.text().await.unwrap();
        assert!(fragment.contains(r#"class="reaction mine""#) && fragment.contains(r#"aria-pressed="true""#), "{fragment}");
        assert!(fragment.contains("🎉 1 reaction: bob. You reacted"), "{fragment}");
        // Alice's page hears it, from her side (not hers).
        let alice_page = signed_in(&app, &alice).await;
        let events = alice_page.client.get(app.url("/events")).send().await.unwrap();
        let mut events = EventStream::new(events);
        let r = htmx_post(&page, "/chats/@alice", &format!("/messages/{id}/react"), &[("emoji", "👀")]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let e = events.next_of(&["oob"], Duration::from_secs(10)).await.expect("a fragment");
        assert!(e.data.contains(&format!(r#"id="reactions-{id}""#)) && e.data.contains("hx-swap-oob"), "{}", e.data);
        assert!(e.data.contains(r#"aria-pressed="false""#), "{}", e.data);
        // Pressing it again takes it back.
        let r = htmx_post(&page, "/chats/@alice", &format!("/messages/{id}/react"), &[("emoji", "🎉")]).await;
        assert!(!r.text().await.unwrap().contains("🎉"));
        let r = htmx_post(&page, "/chats/@alice", &format!("/messages/{id}/react"), &[("emoji", "nope")]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "htmx swaps 422s; refusals go to the form's error line");
    }

    async fn mentions_name_members_and_flag_the_one_mentioned(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        let dave = app.user("dave").await;
        let g = group(&app, &alice, &[&bob, &carol], "team").await;
        app.befriend(&alice, &dave).await;
        let mut bob_events = app.events(&bob, None).await;
        let mut alice_events = app.events(&alice, None).await;
        let (s, m) = to_group(&app, &alice, g, "hi @bob and @Carol, see me@example.com").await;
        assert_eq!(s, StatusCode::CREATED, "{m}");
        let names: Vec<&str> = m["mentions"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
        assert_eq!(names, ["bob", "carol"]);
        assert_eq!(m["mentioned"], false, "the sender is not mentioned");
        let e = bob_events.next_of(&["message"], Duration::from_secs(10)).await.unwrap();
        assert_eq!(e.json()["mentioned"], true);
        let e = alice_events.next_of(&["message"], Duration::from_secs(10)).await.unwrap();
        assert_eq!(e.json()["mentioned"], false);
        let (_, history) = body(app.get(&bob.token, &format!("/api/group_chats/{g}/messages?limit=10")).await).await;
        assert_eq!(history["results"][0]["mentioned"], true);
        assert_eq!(history["results"][0]["mentions"][0]["user_id"].as_i64(), Some(bob.id));

        // Not a member (or nobody at all): 422, nothing sent.
        let before = app.count("message").await;
        for content in ["hey @dave", "hey @nobody_here"] {
            let (s, b) = to_group(&app, &alice, g, content).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{content}: {b}");
            assert!(b["detail"][0]["msg"].as_str().unwrap().contains("is not a member"), "{b}");
        }
        let alice_page = signed_in(&app, &alice).await;
        let chat = format!("/chats/g/{g}");
        let r = htmx_post(&alice_page, &chat, &format!("{chat}/messages"), &[("content", "psst @dave")]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "shown beside the composer, not swapped in");
        assert!(r.text().await.unwrap().contains("@dave is not a member of this group chat"));
        assert_eq!(app.count("message").await, before);
        // Direct messages have no mentions: an @ there is text.
        let (s, d) = body(app.send_dm(&alice, &dave, "ask @somebody").await).await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(d["mentions"], json!([]));

        // The page highlights the mention for the one mentioned.
        let page = signed_in(&app, &bob).await;
        let html = page.get_html(&format!("/chats/g/{g}")).await;
        assert!(html.contains(r#"<span class="mention me">@bob</span>"#), "{html}");
        assert!(html.contains(r#"<span class="mention">@Carol</span>"#), "{html}");
        let (s, list) = body(page.get(&format!("/chats/g/{g}/mentionable")).await).await;
        assert_eq!((s, list), (StatusCode::OK, json!(["alice", "bob", "carol"])));
        let dave_page = signed_in(&app, &dave).await;
        assert_eq!(dave_page.get(&format!("/chats/g/{g}/mentionable")).await.status(), StatusCode::NOT_FOUND);

        // An edit re-reads the mentions, by the same rule.
        let id = m["message_id"].as_i64().unwrap();
        let (s, _) = body(app.patch_json(&alice.token, &format!("/api/messages/{id}"), &json!({ "content": "hi @dave" })).await).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let (s, edited) = body(app.patch_json(&alice.token, &format!("/api/messages/{id}"), &json!({ "content": "hi @carol only" })).await).await;
        assert_eq!(s, StatusCode::OK, "{edited}");
        assert_eq!(edited["mentions"][0]["username"], "carol");
        let (_, history) = body(app.get(&bob.token, &format!("/api/group_chats/{g}/messages?limit=10")).await).await;
        assert_eq!(history["results"][0]["mentioned"], false);
        assert_eq!(app.count("message_mention").await, 1);
    }

    async fn formatting_is_a_safe_subset_rendered_on_request(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let text = "**bold** _it_ ~~old~~ `a<b`\n```\nlet x = 1;\n```\n> quoted\n# not a heading <script>alert(1)</script> [x](javascript:alert(1)) https://example.com";
        let (s, sent) = body(app.post_json(&alice.token, "/api/messages/?addressee_username=bob&render=html", &json!({ "content": text })).await).await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(sent["content"], text, "the source is kept as typed");
        let html = sent["html"].as_str().unwrap();
        for part in ["<strong>bold</strong>", "<em>it</em>", "<del>old</del>", "<code>a&lt;b</code>", r#"<pre class="code-block"><code>let x = 1;</code></pre>"#, "<blockquote>quoted</blockquote>", "# not a heading &lt;script&gt;", "[x](javascript:alert(1))", r#"<a href="https://example.com" rel="noopener noreferrer nofollow" target="_blank">"#] {
            assert!(html.contains(part), "{part} in {html}");
        }
        assert!(!html.contains("<script") && !html.contains("href=\"javascript"), "{html}");
        let (_, plain) = body(app.get(&bob.token, "/api/messages/?friend_username=alice&limit=10").await).await;
        assert!(plain["results"][0].get("html").is_none(), "HTML only on request");
        let (_, rendered) = body(app.get(&bob.token, "/api/messages/?friend_username=alice&limit=10&render=html").await).await;
        assert_eq!(rendered["results"][0]["html"].as_str(), Some(html));
        assert_eq!(app.get(&bob.token, "/api/messages/?friend_username=alice&limit=10&render=pdf").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = signed_in(&app, &bob).await.get_html("/chats/@alice").await;
        assert!(page.contains("<strong>bold</strong>") && !page.contains("<script>alert"), "{page}");
    }
}

// ---- queries per page ----

/// Counts sqlx's query events per request, by the request span's `request_id` (the
/// `x-request-id` a test sends). MySQL only: sqlx-sqlite logs on its worker thread,
/// outside the request's span; both backends run the same store code.
mod query_count {
    use super::*;
    use tracing::{field::Visit, span, Subscriber};
    use tracing_subscriber::{layer::Context, prelude::*, registry::LookupSpan, Layer};

    pub static COUNTS: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();

    struct RequestId(String);

    struct Counter;

    struct Find(Option<String>);
    impl Visit for Find {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "request_id" {
                self.0 = Some(format!("{value:?}"));
            }
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Counter {
        fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
            if attrs.metadata().name() != "request" {
                return;
            }
            let mut find = Find(None);
            attrs.record(&mut find);
            if let (Some(found), Some(span)) = (find.0, ctx.span(id)) {
                span.extensions_mut().insert(RequestId(found));
            }
        }

        fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
            if event.metadata().target() != "sqlx::query" {
                return;
            }
            let Some(scope) = ctx.event_scope(event) else {
                return;
            };
            for span in scope.from_root() {
                if let Some(RequestId(id)) = span.extensions().get::<RequestId>() {
                    *COUNTS
                        .get()
                        .unwrap()
                        .lock()
                        .unwrap()
                        .entry(id.clone())
                        .or_default() += 1;
                    return;
                }
            }
        }
    }

    /// Installs the counter as the process's subscriber (once); false when another
    /// subscriber was there first.
    pub fn install() -> bool {
        static INSTALLED: OnceLock<bool> = OnceLock::new();
        *INSTALLED.get_or_init(|| {
            COUNTS.get_or_init(Default::default);
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Counter))
                .is_ok()
        })
    }

    pub fn of(id: &str) -> usize {
        COUNTS
            .get()
            .unwrap()
            .lock()
            .unwrap()
            .get(id)
            .copied()
            .unwrap_or(0)
    }
}

integration_test! {
    /// A page of messages with replies, reactions and mentions costs exactly the
    /// queries of a page without them: they come in one query whatever the page holds.
    #[needs(mysql)]
    async fn a_page_with_replies_and_reactions_costs_no_extra_queries() {
        assert!(query_count::install(), "the query counter is the process's subscriber");
        let app = spawn_app(Backend::MySql).await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        let g = group(&app, &alice, &[&bob, &carol], "count").await;
        let page = signed_in(&app, &bob).await;
        page.get_html("/chats").await;
        let load = |tag: String| {
            let (page, app) = (&page, &app);
            async move {
                let r = page.client.get(app.url(&format!("/chats/g/{g}"))).header("x-request-id", &tag).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let html = r.text().await.unwrap();
                (query_count::of(&tag), html)
            }
        };
        let mut ids = Vec::new();
        for n in 0..10 {
            ids.push(to_group(&app, &alice, g, &format!("plain {n}")).await.1["message_id"].as_i64().unwrap());
        }
        let tag = uuid::Uuid::new_v4().to_string();
        let (plain, html) = load(tag).await;
        assert!(plain > 0, "queries are counted");
        assert!(!html.contains("reply-quote") && !html.contains(r#"class="reaction""#));
        for (n, original) in ids.iter().enumerate() {
            let (s, _) = reply(&app, &carol, Err(g), *original, &format!("re {n} @bob")).await;
            assert_eq!(s, StatusCode::CREATED);
            for (user, emoji) in [(&alice, "👍"), (&carol, "🎉"), (&carol, "👍")] {
                let r = app.post_json(&user.token, &format!("/api/messages/{original}/reactions"), &json!({ "emoji": emoji })).await;
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        }
        let tag = uuid::Uuid::new_v4().to_string();
        let (rich, html) = load(tag).await;
        assert!(html.contains("reply-quote") && html.contains(r#"class="reaction""#) && html.contains("mention me"));
        assert_eq!(rich, plain, "queries for a page with replies, reactions and mentions");
    }
}

// ---- in a browser: what static/rich.js does ----

mod in_browser {
    use fantoccini::{key::Key, Locator};

    use super::*;
    use crate::browser::{sign_in, wait_for as find, Driver, WAIT};

    integration_test! {
        /// A quote's original far up the history is loaded and shown; replying, reacting
        /// and mentioning from the page.
        #[needs(browser)]
        async fn quotes_jump_replies_reactions_and_mentions_in_a_browser() {
            let mut driver = Driver::start().await;
            let app = spawn_app(Backend::Sqlite).await;
            let alice = app.user("alice").await;
            let bob = app.user("bob").await;
            let g = group(&app, &alice, &[&bob], "pals").await;
            let mut ids = Vec::new();
            for n in 0..160 {
                ids.push(to_group(&app, &alice, g, &format!("message {n}")).await.1["message_id"].as_i64().unwrap());
            }
            let (s, _) = reply(&app, &alice, Err(g), ids[0], "about the very first one").await;
            assert_eq!(s, StatusCode::CREATED);
            let b = driver.browser().await;
            sign_in(&b, &app.url(""), &bob.username).await;
            b.goto(&app.url(&format!("/chats/g/{g}"))).await.unwrap();
            let first = format!("#msg-{}", ids[0]);
            find(&b, &format!("a.reply-quote[data-reply-to='{}']", ids[0])).await;
            // The original is pages away (older pages load only when scrolled to): the
            // quote loads them until it is there, and shows it.
            find(&b, &format!("a.reply-quote[data-reply-to='{}']", ids[0])).await.click().await.unwrap();
            find(&b, &format!("{first}.flash-target")).await;

            // Reply to the newest message of the list from its Reply button.
            let last = ids[159];
            b.execute(&format!("document.querySelector(\".reply-btn[data-reply-id='{last}']\").click()"), vec![]).await.unwrap();
            find(&b, "form.composer .replying").await;
            let input = find(&b, "#composer-input").await;
            input.send_keys("answering the last").await.unwrap();
            input.send_keys(&char::from(Key::Enter).to_string()).await.unwrap();
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let (_, page) = body(app.get(&alice.token, &format!("/api/group_chats/{g}/messages?limit=1")).await).await;
                if page["results"][0]["content"] == "answering the last" {
                    assert_eq!(page["results"][0]["reply_to_message_id"].as_i64(), Some(last));
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "the reply was not sent: {page}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(b.find(Locator::Css("form.composer .replying")).await.is_err(), "the reply bar goes once sent");

            // React from the picker.
            b.execute(&format!("var d = document.querySelector('#msg-{last} details.react-picker'); d.open = true; d.querySelector('button[aria-label=\"React with 🎉\"]').click()"), vec![]).await.unwrap();
            find(&b, &format!("#reactions-{last} .reaction.mine")).await;

            // Mention autocomplete: `@al` offers alice; Enter takes her.
            let input = find(&b, "#composer-input").await;
            input.send_keys("hi @al").await.unwrap();
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let offered = b.execute("var o = document.querySelector(\"#mention-list li[aria-selected='true']\"); return o ? o.textContent : null", vec![]).await.unwrap();
                if offered == json!("@alice") {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "alice was not offered: {offered}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            input.send_keys(&char::from(Key::Enter).to_string()).await.unwrap();
            assert_eq!(input.prop("value").await.unwrap().as_deref(), Some("hi @alice "));
            b.close().await.unwrap();
        }
    }
}
