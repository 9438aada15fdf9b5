//! Search across the messages one can read now: words of any language, filters, paging,
//! kept in step with edits and deletes, and never a message one could not open.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::rich::group;
use crate::{both_backends, helpers::*};

async fn body(r: reqwest::Response) -> (StatusCode, Value) {
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn search(app: &TestApp, user: &ApiUser, query: &str) -> (StatusCode, Value) {
    body(app.get(&user.token, &format!("/api/search?{query}")).await).await
}

/// The contents of a page of results, in order.
fn contents(page: &Value) -> Vec<String> {
    page["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|h| h["content"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Posts to a group; the message, which must be created.
pub(crate) async fn to_group(app: &TestApp, from: &ApiUser, group: i64, content: &str) -> Value {
    let r = app
        .post_json(
            &from.token,
            "/api/messages/",
            &json!({ "content": content, "group_chat_id": group }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

both_backends! {
    async fn words_of_any_language_newest_first_with_matches_marked(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        for text in [
            "The quick brown fox",
            "Viele Grüße aus MÜNCHEN, eure Jürgen",
            "明日は東京タワーに行きます",
            "我爱北京天安门",
            "another fox, much later",
        ] {
            assert_eq!(app.send_dm(&alice, &bob, text).await.status(), StatusCode::CREATED);
        }
        let (s, page) = search(&app, &bob, "q=FOX").await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(contents(&page), ["another fox, much later", "The quick brown fox"], "newest first");
        let hit = &page["results"][1];
        assert_eq!(hit["highlight"], "The quick brown <mark>fox</mark>");
        assert_eq!(hit["conversation"], json!({ "kind": "direct", "id": alice.id, "name": "alice" }));
        assert_eq!(hit["path"], format!("/chats/@alice#msg-{}", hit["message_id"]));
        for (query, found) in [
            ("q=m%C3%BCnchen", "Viele Grüße aus MÜNCHEN, eure Jürgen"),
            ("q=gr%C3%BC%C3%9Fe+j%C3%BCrgen", "Viele Grüße aus MÜNCHEN, eure Jürgen"),
            ("q=GR%C3%9CSSE", "Viele Grüße aus MÜNCHEN, eure Jürgen"),
            (&format!("q={}", urlencode("東京タワー")), "明日は東京タワーに行きます"),
            (&format!("q={}", urlencode("タワー")), "明日は東京タワーに行きます"),
            (&format!("q={}", urlencode("北京")), "我爱北京天安门"),
            (&format!("q={}", urlencode("天安门")), "我爱北京天安门"),
        ] {
            let (s, page) = search(&app, &alice, query).await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(contents(&page), [found], "{query}");
        }
        let (_, page) = search(&app, &alice, &format!("q={}", urlencode("東京タワー"))).await;
        assert_eq!(page["results"][0]["highlight"], "明日は<mark>東京タワー</mark>に行きます");
        let (_, page) = search(&app, &alice, "q=m%C3%BCnchen").await;
        assert_eq!(page["results"][0]["highlight"], "Viele Grüße aus <mark>MÜNCHEN</mark>, eure Jürgen");
        // Every word must match; a phrase whose pairs are not all there is no match.
        assert!(contents(&search(&app, &alice, "q=quick+cat").await.1).is_empty());
        assert!(contents(&search(&app, &alice, &format!("q={}", urlencode("東京北京"))).await.1).is_empty());

        // Paging with the cursor.
        let (_, first) = search(&app, &alice, "q=fox&limit=1").await;
        assert_eq!(contents(&first), ["another fox, much later"]);
        let next = first["cursor"]["next_page"].as_str().unwrap().to_string();
        let (_, second) = search(&app, &alice, &format!("q=fox&limit=1&cursor={next}")).await;
        assert_eq!(contents(&second), ["The quick brown fox"]);
        assert_eq!(second["cursor"]["next_page"], Value::Null);
    }

    async fn only_what_you_can_read_now_and_in_step_with_edits_and_deletes(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        let dave = app.user("dave").await;
        app.befriend(&carol, &dave).await;
        assert_eq!(app.send_dm(&carol, &dave, "a secret fox").await.status(), StatusCode::CREATED);
        let g = group(&app, &alice, &[&bob, &carol], "den").await;
        let in_group = to_group(&app, &carol, g, "fox in the group").await;
        let (_, dm) = body(app.send_dm(&alice, &bob, "fox between us").await).await;
        let (_, page) = search(&app, &alice, "q=fox").await;
        assert_eq!(contents(&page), ["fox between us", "fox in the group"], "not carol and dave's");
        assert_eq!(page["results"][1]["conversation"]["kind"], "group");
        assert_eq!(page["results"][1]["path"], format!("/chats/g/{g}#msg-{}", in_group["message_id"]));

        // Filters: a chat, a sender, dates.
        assert_eq!(contents(&search(&app, &alice, &format!("q=fox&group_chat_id={g}")).await.1), ["fox in the group"]);
        assert_eq!(contents(&search(&app, &alice, "q=fox&friend_username=bob").await.1), ["fox between us"]);
        assert_eq!(contents(&search(&app, &alice, "q=fox&from=carol").await.1), ["fox in the group"]);
        assert_eq!(contents(&search(&app, &alice, "q=fox&before=2000-01-01").await.1), Vec::<String>::new());
        assert_eq!(contents(&search(&app, &alice, "q=fox&after=2000-01-01&before=2999-12-31").await.1).len(), 2);
        assert_eq!(search(&app, &alice, "q=fox&after=someday").await.0, StatusCode::UNPROCESSABLE_ENTITY);
        let outsider_group = group(&app, &carol, &[&dave], "theirs").await;
        assert_eq!(search(&app, &alice, &format!("q=fox&group_chat_id={outsider_group}")).await.0, StatusCode::NOT_FOUND);

        // Bad queries: a clear 4xx.
        for q in ["q=", "q=+++", "q=%3F%21", &format!("q={}", "a".repeat(500)), "q=fox&limit=0", "q=fox&cursor=prev___9", "q=fox&cursor=next___x"] {
            let (s, b) = search(&app, &alice, q).await;
            assert!(s.is_client_error(), "{q}: {s} {b}");
        }
        assert_eq!(app.get(&alice.token, "/api/search").await.status(), StatusCode::UNPROCESSABLE_ENTITY);

        // Edits and deletes.
        let id = dm["message_id"].as_i64().unwrap();
        assert_eq!(app.patch_json(&alice.token, &format!("/api/messages/{id}"), &json!({ "content": "wolf between us" })).await.status(), StatusCode::OK);
        assert_eq!(contents(&search(&app, &bob, "q=fox").await.1), ["fox in the group"]);
        assert_eq!(contents(&search(&app, &bob, "q=wolf").await.1), ["wolf between us"]);
        assert_eq!(app.delete(&alice.token, &format!("/api/messages/{id}")).await.status(), StatusCode::OK);
        assert!(contents(&search(&app, &bob, "q=wolf").await.1).is_empty());
        assert_eq!(app.count(&format!("message_search WHERE message_id = {id}")).await, 0, "its postings went with it");

        // A group left is no longer searched.
        assert_eq!(app.post(&alice.token, &format!("/api/group_chats/{g}/leave")).await.status(), StatusCode::OK);
        assert!(contents(&search(&app, &alice, "q=fox").await.1).is_empty());
        assert_eq!(contents(&search(&app, &bob, "q=fox").await.1), ["fox in the group"]);
    }

    async fn the_search_page_links_to_the_message_in_its_chat(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let (_, m) = body(app.send_dm(&alice, &bob, "Treffen wir uns in München?").await).await;
        let id = m["message_id"].as_i64().unwrap();
        let page = app.browser();
        assert_eq!(page.sign_in(&bob.email, PASSWORD).await.status(), StatusCode::SEE_OTHER);
        let html = page.get_html("/search").await;
        assert!(html.contains(r#"role="search""#) && !html.contains("No messages found"));
        let html = page.get_html(&format!("/search?q={}", urlencode("münchen"))).await;
        assert!(html.contains("<mark>München</mark>"), "{html}");
        assert!(html.contains(&format!(r#"href="/chats/@alice#msg-{id}""#)), "{html}");
        let html = page.get_html(&format!("/search?q=nothing+like+it&chat=d-{}", alice.id)).await;
        assert!(html.contains("No messages found"), "{html}");
        let r = page.get("/search?q=%3F").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.text().await.unwrap().contains("no words to search for"));
        let r = page.get(&format!("/messages/{id}/open")).await;
        assert_eq!(location(&r), format!("/chats/@alice#msg-{id}"));
        let stranger = app.user("stranger").await;
        let other = app.browser();
        other.sign_in(&stranger.email, PASSWORD).await;
        assert_eq!(other.get(&format!("/messages/{id}/open")).await.status(), StatusCode::NOT_FOUND);
    }

    async fn messages_from_before_the_index_are_indexed_after_a_start(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        // A message as an older version wrote it: no postings.
        let insert = "INSERT INTO message (sender_id, reciever_id, content, created_date_time, seen) VALUES (?, ?, 'a legacy zebra', '2024-01-01 10:00:00', 0)";
        let id: i64 = match &app.db {
            messenger::db::Db::MySql(pool) => sqlx::query(insert).bind(alice.id).bind(bob.id).execute(pool).await.unwrap().last_insert_id() as i64,
            messenger::db::Db::Sqlite(pool) => sqlx::query(insert).bind(alice.id).bind(bob.id).execute(pool).await.unwrap().last_insert_rowid(),
        };
        let progress = format!("UPDATE search_backfill SET done_to = 0, up_to = {id} WHERE id = 1");
        match &app.db {
            messenger::db::Db::MySql(pool) => sqlx::query(&progress).execute(pool).await.map(drop).unwrap(),
            messenger::db::Db::Sqlite(pool) => sqlx::query(&progress).execute(pool).await.map(drop).unwrap(),
        }
        assert!(contents(&search(&app, &bob, "q=zebra").await.1).is_empty());
        let restarted = spawn_app_on(app.database.clone(), &[]).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if contents(&search(&restarted, &bob, "q=zebra").await.1) == ["a legacy zebra"] {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the older message was never indexed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn date_filters_narrow_by_when_a_message_was_written(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let mut ids = Vec::new();
        for n in 0..4 {
            let (_, m) = body(app.send_dm(&alice, &bob, &format!("owl {n}")).await).await;
            ids.push(m["message_id"].as_i64().unwrap());
        }
        // Written on four days (ids grow with time, as they do when sent).
        for (id, day) in ids.iter().zip(["2025-01-01", "2025-06-01", "2025-06-02", "2026-01-01"]) {
            let sql = format!("UPDATE message SET created_date_time = '{day} 12:00:00' WHERE message_id = {id}");
            match &app.db {
                messenger::db::Db::MySql(pool) => sqlx::query(&sql).execute(pool).await.map(drop).unwrap(),
                messenger::db::Db::Sqlite(pool) => sqlx::query(&sql).execute(pool).await.map(drop).unwrap(),
            }
        }
        let found = |q: &'static str| {
            let (app, bob) = (&app, &bob);
            async move { contents(&search(app, bob, q).await.1) }
        };
        assert_eq!(found("q=owl&after=2025-06-01").await, ["owl 3", "owl 2", "owl 1"]);
        assert_eq!(found("q=owl&before=2025-06-02").await, ["owl 1", "owl 0"]);
        assert_eq!(found("q=owl&after=2025-03-01&before=2025-12-31T23:59:59").await, ["owl 2", "owl 1"]);
        assert_eq!(found("q=owl&after=2025-06-01T12:00:01").await, ["owl 3", "owl 2"]);
        assert_eq!(found("q=owl&after=2030-01-01").await, Vec::<String>::new());
        let (_, page) = search(&app, &bob, "q=owl&after=2025-03-01&limit=2").await;
        assert_eq!(contents(&page), ["owl 3", "owl 2"]);
        let next = page["cursor"]["next_page"].as_str().unwrap().to_string();
        let (_, page) = search(&app, &bob, &format!("q=owl&after=2025-03-01&limit=2&cursor={next}")).await;
        assert_eq!(contents(&page), ["owl 1"]);
    }
}
