//! Conversations: the messages contract, paging, groups, edit and delete, read state,
//! idempotent sends, rendering, and delivery through two processes.

use std::{collections::HashMap, time::Duration};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

async fn body(r: reqwest::Response) -> (StatusCode, Value) {
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

both_backends! {
    async fn the_contract_rows_for_messages(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let stranger = app.user("stranger").await;
        let (s, b) = body(app.send_dm(&alice, &stranger, "hi").await).await;
        assert_eq!((s, b["detail"].as_str()), (StatusCode::NOT_FOUND, Some("friendship was not found")));
        let (s, b) = body(app.post_json(&alice.token, "/api/messages/?addressee_username=nobody", &json!({ "content": "hi" })).await).await;
        assert_eq!((s, b["detail"].as_str()), (StatusCode::NOT_FOUND, Some("no such user exists")));
        let (s, b) = body(app.post_json(&alice.token, "/api/messages/", &json!({ "content": "hi", "group_chat_id": null })).await).await;
        assert_eq!((s, b["detail"].as_str()), (StatusCode::BAD_REQUEST, Some("no addressee or groupchat specified")));
        // A pending request, then a declined one: still not friends.
        app.post(&alice.token, "/api/friends/requests?username=bob").await;
        let (s, b) = body(app.send_dm(&alice, &bob, "hi").await).await;
        assert_eq!((s, b["detail"].as_str()), (StatusCode::BAD_REQUEST, Some("you cannot message this person if you are not their friend")));
        app.post(&bob.token, "/api/friends/requests/decline?requester_username=alice").await;
        let (s, _) = body(app.send_dm(&bob, &alice, "hi").await).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(app.count("message").await, 0, "nothing stored by refused sends");
        // Friends can. (Only Bob, who declined, may clear the refusal.)
        app.delete(&bob.token, "/api/friends/requests?friend_username=alice").await;
        app.befriend(&alice, &bob).await;
        let (s, m) = body(app.send_dm(&alice, &bob, "  hello bob  ").await).await;
        assert_eq!(s, StatusCode::CREATED);
        for field in ["message_id", "sender_id", "reciever_id", "content", "group_chat_id", "created_date_time", "last_edited_date_time", "seen"] {
            assert!(m.get(field).is_some(), "message has {field}");
        }
        assert_eq!((m["sender_id"].as_i64(), m["reciever_id"].as_i64(), m["content"].as_str()), (Some(alice.id), Some(bob.id), Some("hello bob")));
        assert_eq!(m["seen"], false);
        // Bad content is refused and stores nothing.
        for bad in [json!({ "content": "   " }), json!({ "content": "x".repeat(2001) }), json!({ "nope": 1 })] {
            let r = app.post_json(&alice.token, "/api/messages/?addressee_username=bob", &bad).await;
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        }
        let r = app.api.post(app.url("/api/messages/?addressee_username=bob")).bearer_auth(&alice.token).header("content-type", "application/json").body("{not json").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(app.count("message").await, 1);
        let (s, b) = body(app.get(&alice.token, "/api/messages/?friend_username=bob&limit=10&cursor=next___abc").await).await;
        assert_eq!((s, b["detail"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid cursor")));
        let (s, b) = body(app.get(&alice.token, "/api/messages/?friend_username=nobody&limit=10").await).await;
        assert_eq!((s, b["detail"].as_str()), (StatusCode::NOT_FOUND, Some("no such user exists")));
        // History stays readable after an unfriend, but nothing new can be sent.
        app.delete(&bob.token, "/api/friends/requests?friend_username=alice").await;
        let (_, page) = body(app.get(&alice.token, "/api/messages/?friend_username=bob&limit=10").await).await;
        assert_eq!(page["results"].as_array().unwrap().len(), 1);
        assert_eq!(app.send_dm(&alice, &bob, "still there?").await.status(), StatusCode::NOT_FOUND);
    }

    async fn a_hundred_and_twenty_messages_page_50_50_20_and_back(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let mut sends = Vec::new();
        for n in 0..120 {
            let (a, b) = (alice.clone(), bob.clone());
            let (from, to) = if n % 3 == 0 { (b, a) } else { (a, b) };
            let client = app.api.clone();
            let url = app.url(&format!("/api/messages/?addressee_username={}", to.username));
            sends.push(tokio::spawn(async move {
                client.post(url).bearer_auth(&from.token).json(&json!({ "content": format!("m{n}") })).send().await.unwrap().status()
            }));
        }
        for s in sends {
            assert_eq!(s.await.unwrap(), StatusCode::CREATED);
        }
        let page = |cursor: Option<String>| {
            let (app, token) = (&app, alice.token.clone());
            async move {
                let path = match cursor { Some(c) => format!("/api/messages/?friend_username=bob&limit=50&cursor={c}"), None => "/api/messages/?friend_username=bob&limit=50".into() };
                let (s, b) = body(app.get(&token, &path).await).await;
                assert_eq!(s, StatusCode::OK);
                let ids: Vec<i64> = b["results"].as_array().unwrap().iter().map(|m| m["message_id"].as_i64().unwrap()).collect();
                (ids, b["cursor"]["prev_page"].as_str().map(String::from), b["cursor"]["next_page"].as_str().map(String::from))
            }
        };
        let (p1, prev1, n1) = page(None).await;
        let (p2, prev2, n2) = page(n1).await;
        let (p3, prev3, n3) = page(n2).await;
        assert_eq!((p1.len(), p2.len(), p3.len()), (50, 50, 20));
        assert_eq!((prev1, n3), (None, None));
        let all: Vec<i64> = p1.iter().chain(&p2).chain(&p3).copied().collect();
        assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first, none repeated");
        assert_eq!(all.len(), 120);
        let (back2, _, _) = page(prev3).await;
        assert_eq!(back2, p2);
        let (back1, back_prev, _) = page(prev2).await;
        assert_eq!(back1, p1);
        assert_eq!(back_prev, None);
        // Bob sees the same conversation.
        let (s, b) = body(app.get(&bob.token, "/api/messages/?friend_username=alice&limit=50").await).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["results"][0]["message_id"].as_i64(), Some(p1[0]));
    }

    async fn group_chats_create_add_rename_leave_remove(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        let dave = app.user("dave").await;
        let outsider = app.user("outsider").await;
        app.befriend(&alice, &bob).await;
        app.befriend(&alice, &carol).await;
        app.befriend(&bob, &dave).await;
        let (s, b) = body(app.post_json(&alice.token, "/api/group_chats/", &json!({ "group_chat_name": "x".repeat(21), "usernames": ["bob"] })).await).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        let (s, b) = body(app.post_json(&alice.token, "/api/group_chats/", &json!({ "group_chat_name": "trip", "usernames": ["outsider"] })).await).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "only friends: {b}");
        // One name unknown: 404 with the original's text, and no group.
        let (s, b) = body(app.post_json(&alice.token, "/api/group_chats/", &json!({ "group_chat_name": "trip", "usernames": ["bob", "nobody"] })).await).await;
        assert_eq!((s, b["detail"].as_str()), (StatusCode::NOT_FOUND, Some("no such user exists")));
        assert_eq!(app.count("group_chat").await, 0);
        // Names in any case, each once however often named.
        let (s, g) = body(app.post_json(&alice.token, "/api/group_chats/", &json!({ "group_chat_name": "trip", "usernames": ["BOB", "carol", " Carol"] })).await).await;
        assert_eq!(s, StatusCode::CREATED, "{g}");
        assert_eq!(g["name"], "trip");
        let gid = g["group_chat_id"].as_i64().unwrap();
        let send = |user: &ApiUser, text: &str| {
            let (token, body) = (user.token.clone(), json!({ "content": text, "group_chat_id": gid }));
            let app = &app;
            async move { app.post_json(&token, "/api/messages/", &body).await }
        };
        assert_eq!(send(&bob, "hi all").await.status(), StatusCode::CREATED);
        // Non-members get 404 on read and post, with the original's text for a post.
        let (s, b) = body(send(&outsider, "let me in").await).await;
        assert_eq!((s, b["detail"].as_str()), (StatusCode::NOT_FOUND, Some("user not found")));
        assert_eq!(app.get(&outsider.token, &format!("/api/group_chats/{gid}/messages?limit=10")).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.get(&outsider.token, &format!("/api/group_chats/{gid}")).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.get(&outsider.token, "/api/group_chats/999999/messages?limit=10").await.status(), StatusCode::NOT_FOUND);
        // Any member adds their own friend, and renames.
        assert_eq!(app.post_json(&bob.token, &format!("/api/group_chats/{gid}/members"), &json!({ "username": "dave" })).await.status(), StatusCode::CREATED);
        assert_eq!(app.post_json(&bob.token, &format!("/api/group_chats/{gid}/members"), &json!({ "username": "dave" })).await.status(), StatusCode::BAD_REQUEST);
        let (s, r) = body(app.patch_json(&carol.token, &format!("/api/group_chats/{gid}"), &json!({ "name": "road trip" })).await).await;
        assert_eq!((s, r["name"].as_str()), (StatusCode::OK, Some("road trip")));
        let (_, details) = body(app.get(&dave.token, &format!("/api/group_chats/{gid}")).await).await;
        let members: Vec<&str> = details["members"].as_array().unwrap().iter().map(|m| m["username"].as_str().unwrap()).collect();
        assert_eq!(members, ["alice", "bob", "carol", "dave"]);
        // Only the creator removes others.
        assert_eq!(app.delete(&bob.token, &format!("/api/group_chats/{gid}/members/carol")).await.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.delete(&alice.token, &format!("/api/group_chats/{gid}/members/carol")).await.status(), StatusCode::OK);
        assert_eq!(send(&carol, "still here?").await.status(), StatusCode::NOT_FOUND);
        let (_, page) = body(app.get(&dave.token, &format!("/api/group_chats/{gid}/messages?limit=10")).await).await;
        assert_eq!(page["results"][0]["content"], "hi all");
        // Everyone leaves; the group is gone.
        for u in [&alice, &bob, &dave] {
            assert_eq!(app.post(&u.token, &format!("/api/group_chats/{gid}/leave")).await.status(), StatusCode::OK);
        }
        assert_eq!(app.count("group_chat").await, 0);
    }

    async fn a_group_holds_at_most_max_group_members(app) {
        let app = spawn_app_on(app.database.clone(), &[("MAX_GROUP_MEMBERS", "3")]).await;
        let alice = app.user("alice").await;
        let mut friends = Vec::new();
        for name in ["bob", "carol", "dave"] {
            let friend = app.user(name).await;
            app.befriend(&alice, &friend).await;
            friends.push(friend);
        }
        // Four at creation is one too many: refused, and no group is made.
        let (s, b) = body(app.post_json(&alice.token, "/api/group_chats/", &json!({ "group_chat_name": "big", "usernames": ["bob", "carol", "dave"] })).await).await;
        assert_eq!((s, b["detail"].as_str()), (StatusCode::CONFLICT, Some("the group is full: at most 3 members")));
        assert_eq!(app.count("group_chat").await, 0);
        let (s, g) = body(app.post_json(&alice.token, "/api/group_chats/", &json!({ "group_chat_name": "small", "usernames": ["bob", "carol"] })).await).await;
        assert_eq!(s, StatusCode::CREATED);
        let gid = g["group_chat_id"].as_i64().unwrap();
        // Full: the fourth is refused and not added; after someone leaves there is room.
        let add = |who: &'static str| {
            let (app, token) = (&app, alice.token.clone());
            async move { app.post_json(&token, &format!("/api/group_chats/{gid}/members"), &json!({ "username": who })).await }
        };
        let (s, b) = body(add("dave").await).await;
        assert_eq!((s, b["detail"].as_str()), (StatusCode::CONFLICT, Some("the group is full: at most 3 members")));
        assert_eq!(app.get(&friends[2].token, &format!("/api/group_chats/{gid}")).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.post(&friends[0].token, &format!("/api/group_chats/{gid}/leave")).await.status(), StatusCode::OK);
        assert_eq!(add("dave").await.status(), StatusCode::CREATED);
    }

    async fn only_the_author_edits_or_deletes_and_the_other_side_hears_it(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let eve = app.user("eve").await;
        app.befriend(&alice, &bob).await;
        let mut bob_stream = app.events(&bob, None).await;
        let (_, m) = body(app.send_dm(&alice, &bob, "frist").await).await;
        let id = m["message_id"].as_i64().unwrap();
        assert_eq!(bob_stream.next_of(&["message"], Duration::from_secs(5)).await.unwrap().json()["content"], "frist");
        assert_eq!(app.patch_json(&bob.token, &format!("/api/messages/{id}"), &json!({ "content": "hacked" })).await.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.patch_json(&eve.token, &format!("/api/messages/{id}"), &json!({ "content": "hacked" })).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.delete(&bob.token, &format!("/api/messages/{id}")).await.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.delete(&eve.token, &format!("/api/messages/{id}")).await.status(), StatusCode::NOT_FOUND);
        let (s, edited) = body(app.patch_json(&alice.token, &format!("/api/messages/{id}"), &json!({ "content": "first" })).await).await;
        assert_eq!(s, StatusCode::OK);
        assert!(edited["last_edited_date_time"].is_string());
        let e = bob_stream.next_of(&["message_edited"], Duration::from_secs(5)).await.unwrap();
        assert_eq!(e.json()["content"], "first");
        assert_eq!(app.delete(&alice.token, &format!("/api/messages/{id}")).await.status(), StatusCode::OK);
        let e = bob_stream.next_of(&["message_deleted"], Duration::from_secs(5)).await.unwrap();
        assert_eq!(e.json()["message_id"].as_i64(), Some(id));
        assert_eq!(app.count("message").await, 0);
    }

    async fn unread_counts_and_seen_marks_move_as_the_recipient_reads(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        app.befriend(&alice, &bob).await;
        app.befriend(&alice, &carol).await;
        let mut alice_stream = app.events(&alice, None).await;
        let mut last = 0;
        for n in 0..3 {
            let (_, m) = body(app.send_dm(&alice, &bob, &format!("m{n}")).await).await;
            last = m["message_id"].as_i64().unwrap();
        }
        app.send_dm(&carol, &alice, "from carol").await;
        let (_, convs) = body(app.get(&bob.token, "/api/conversations").await).await;
        assert_eq!(convs[0]["name"], "alice");
        assert_eq!(convs[0]["unread"], 3);
        assert_eq!(convs[0]["last_message"], "m2");
        let (_, convs) = body(app.get(&alice.token, "/api/conversations").await).await;
        let names: Vec<&str> = convs.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["carol", "bob"], "most recent first");
        assert_eq!(convs[1]["unread"], 0, "my own messages are not unread");
        let r = app.post_json(&bob.token, "/api/messages/seen", &json!({ "friend_username": "alice", "message_id": last })).await;
        assert_eq!(r.status(), StatusCode::OK);
        let (_, convs) = body(app.get(&bob.token, "/api/conversations").await).await;
        assert_eq!(convs[0]["unread"], 0);
        let e = alice_stream.next_of(&["seen"], Duration::from_secs(5)).await.expect("the sender hears it was seen");
        assert_eq!(e.json(), json!({ "message_id": last, "user_id": bob.id }));
        let (_, page) = body(app.get(&alice.token, "/api/messages/?friend_username=bob&limit=5").await).await;
        assert!(page["results"].as_array().unwrap().iter().all(|m| m["seen"] == true));
        // Groups: a read marker per member.
        let (_, g) = body(app.post_json(&alice.token, "/api/group_chats/", &json!({ "group_chat_name": "g", "usernames": ["bob"] })).await).await;
        let gid = g["group_chat_id"].as_i64().unwrap();
        let (_, gm) = body(app.post_json(&alice.token, "/api/messages/", &json!({ "content": "group hi", "group_chat_id": gid })).await).await;
        let (_, convs) = body(app.get(&bob.token, "/api/conversations").await).await;
        let group_row = convs.as_array().unwrap().iter().find(|c| c["kind"] == "group").unwrap().clone();
        assert_eq!(group_row["unread"], 1);
        app.post_json(&bob.token, "/api/messages/seen", &json!({ "group_chat_id": gid, "message_id": gm["message_id"] })).await;
        let (_, convs) = body(app.get(&bob.token, "/api/conversations").await).await;
        let group_row = convs.as_array().unwrap().iter().find(|c| c["kind"] == "group").unwrap().clone();
        assert_eq!(group_row["unread"], 0);
    }

    async fn the_chat_list_follows_partial_reads_deletes_and_groups(app) {
        // The list is read per conversation from indexes (store::messages::conversations):
        // the cases an aggregate over every message got right by construction.
        async fn list(app: &TestApp, user: &ApiUser) -> Vec<(String, String, Value, Value, i64)> {
            let (s, convs) = body(app.get(&user.token, "/api/conversations").await).await;
            assert_eq!(s, StatusCode::OK);
            convs.as_array().unwrap().iter().map(|c| (
                c["kind"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
                c["last_message"].clone(),
                c["last_sender_id"].clone(),
                c["unread"].as_i64().unwrap(),
            )).collect()
        }
        let row = |kind: &str, name: &str, last: Option<&str>, sender: Option<i64>, unread: i64| {
            (kind.to_string(), name.to_string(), json!(last), json!(sender), unread)
        };
        let [alice, bob, carol, dave, eve] = [
            app.user("alice").await, app.user("bob").await, app.user("carol").await,
            app.user("dave").await, app.user("eve").await,
        ];
        for other in [&bob, &carol, &dave, &eve] {
            app.befriend(&alice, other).await;
        }
        async fn group(app: &TestApp, owner: &ApiUser, name: &str, members: &[&str]) -> i64 {
            let (_, g) = body(app.post_json(&owner.token, "/api/group_chats/", &json!({ "group_chat_name": name, "usernames": members })).await).await;
            g["group_chat_id"].as_i64().unwrap()
        }
        async fn in_group(app: &TestApp, user: &ApiUser, group: i64, text: &str) -> Value {
            let (s, m) = body(app.post_json(&user.token, "/api/messages/", &json!({ "content": text, "group_chat_id": group })).await).await;
            assert_eq!(s, StatusCode::CREATED, "{m}");
            m
        }
        let id = |m: Value| m["message_id"].as_i64().unwrap();
        // A group nobody wrote in: listed last, without a last message.
        group(&app, &alice, "quiet", &["bob"]).await;
        let mut from_bob = Vec::new();
        for text in ["b1", "b2", "b3"] {
            from_bob.push(id(body(app.send_dm(&bob, &alice, text).await).await.1));
        }
        let d1 = id(body(app.send_dm(&alice, &dave, "d1").await).await.1);
        let d2 = id(body(app.send_dm(&alice, &dave, "d2").await).await.1);
        let busy = group(&app, &alice, "busy", &["bob", "eve"]).await;
        in_group(&app, &bob, busy, "g1").await;
        in_group(&app, &alice, busy, "g2").await;
        let g3 = id(in_group(&app, &eve, busy, "g3").await);
        // Carol only ever wrote; Alice only ever read her.
        app.send_dm(&carol, &alice, "c1").await;
        // Read up to b2 of b1..b3: one left unread.
        let r = app.post_json(&alice.token, "/api/messages/seen", &json!({ "friend_username": "bob", "message_id": from_bob[1] })).await;
        assert_eq!(r.status(), StatusCode::OK);
        // The last message deleted: the one before it is the last again.
        assert_eq!(app.delete(&alice.token, &format!("/api/messages/{d2}")).await.status(), StatusCode::OK);
        // A member who leaves the service: their group message stays, from nobody, unread.
        let r = app.call(reqwest::Method::DELETE, &eve.token, "/api/account", Some(&json!({ "password": PASSWORD }))).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(list(&app, &alice).await, vec![
            row("direct", "carol", Some("c1"), Some(carol.id), 1),
            row("group", "busy", Some("g3"), None, 2),
            row("direct", "dave", Some("d1"), Some(alice.id), 0),
            row("direct", "bob", Some("b3"), Some(bob.id), 1),
            row("group", "quiet", None, None, 0),
        ]);
        assert_eq!(list(&app, &carol).await, vec![row("direct", "alice", Some("c1"), Some(carol.id), 0)], "only sent: nothing unread");
        assert_eq!(list(&app, &bob).await, vec![
            row("group", "busy", Some("g3"), None, 2),
            row("direct", "alice", Some("b3"), Some(bob.id), 0),
            row("group", "quiet", None, None, 0),
        ]);
        assert_eq!(list(&app, &dave).await, vec![row("direct", "alice", Some("d1"), Some(alice.id), 1)]);
        // Every message of a conversation deleted: gone from both lists.
        assert_eq!(app.delete(&alice.token, &format!("/api/messages/{d1}")).await.status(), StatusCode::OK);
        assert_eq!(list(&app, &dave).await, vec![]);
        assert!(list(&app, &alice).await.iter().all(|r| r.1 != "dave"));
        // A group read to its end, then written in again: to the top, one unread.
        app.post_json(&alice.token, "/api/messages/seen", &json!({ "group_chat_id": busy, "message_id": g3 })).await;
        in_group(&app, &bob, busy, "g4").await;
        let now = list(&app, &alice).await;
        assert_eq!(now[0], row("group", "busy", Some("g4"), Some(bob.id), 1));
        assert_eq!(now.len(), 4);
    }

    async fn the_same_client_key_posts_once(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let body_json = json!({ "content": "only once", "client_key": "key-123" });
        let path = "/api/messages/?addressee_username=bob";
        let (a, b) = tokio::join!(app.post_json(&alice.token, path, &body_json), app.post_json(&alice.token, path, &body_json));
        let (sa, ma) = body(a).await;
        let (sb, mb) = body(b).await;
        assert!(sa.is_success() && sb.is_success(), "{sa} {sb}");
        assert_eq!(ma["message_id"], mb["message_id"]);
        assert_eq!(app.count("message").await, 1);
        // The page composer uses the same key field.
        let browser = app.browser();
        browser.sign_in("alice", PASSWORD).await;
        let page = browser.get_html("/chats/@bob").await;
        let key_start = page.find(r#"name="client_key" value=""#).unwrap() + r#"name="client_key" value=""#.len();
        let key = &page[key_start..key_start + page[key_start..].find('"').unwrap()];
        for _ in 0..2 {
            let r = browser.post_form("/chats/@bob", "/chats/@bob/messages", &[("content", "double click"), ("client_key", key)]).await;
            assert_eq!(r.status(), StatusCode::SEE_OTHER);
        }
        assert_eq!(app.count("message").await, 2);
    }

    async fn concurrent_sends_each_get_their_own_answer(app) {
        // Sends that arrive together share a transaction; a refused one must not take
        // the others with it, nor slip through with them.
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        let dave = app.user("dave").await;
        app.befriend(&alice, &bob).await;
        app.befriend(&alice, &carol).await;
        let (_, g) = body(app.post_json(&alice.token, "/api/group_chats/", &json!({ "group_chat_name": "g", "usernames": ["bob"] })).await).await;
        let gid = g["group_chat_id"].as_i64().unwrap();
        let mut sends = Vec::new();
        for n in 0..15 {
            sends.push((alice.token.clone(), "/api/messages/?addressee_username=bob".to_string(), json!({ "content": format!("to bob {n}") }), StatusCode::CREATED));
            sends.push((dave.token.clone(), "/api/messages/?addressee_username=bob".into(), json!({ "content": "stranger" }), StatusCode::NOT_FOUND));
            sends.push((bob.token.clone(), "/api/messages/".into(), json!({ "content": format!("group {n}"), "group_chat_id": gid }), StatusCode::CREATED));
            sends.push((carol.token.clone(), "/api/messages/".into(), json!({ "content": "not a member", "group_chat_id": gid }), StatusCode::NOT_FOUND));
            sends.push((alice.token.clone(), "/api/messages/?addressee_username=carol".into(), json!({ "content": "same key", "client_key": "k1" }), StatusCode::OK));
        }
        let answers = futures_util::future::join_all(sends.iter().map(|(token, path, json, _)| app.post_json(token, path, json))).await;
        let mut keyed = Vec::new();
        for ((_, path, json, want), answer) in sends.iter().zip(answers) {
            let (status, m) = body(answer).await;
            if json.get("client_key").is_some() {
                assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{status}");
                keyed.push((status, m["message_id"].clone()));
            } else {
                assert_eq!(status, *want, "{path} {json}");
            }
        }
        assert_eq!(keyed.iter().filter(|(s, _)| *s == StatusCode::CREATED).count(), 1, "one keyed send posted");
        assert!(keyed.iter().all(|(_, id)| *id == keyed[0].1), "every repeat answers with that message");
        assert_eq!(app.count("message").await, 15 + 15 + 1, "nothing refused was stored");
        let (_, page) = body(app.get(&bob.token, "/api/messages/?friend_username=alice&limit=50").await).await;
        assert_eq!(page["results"].as_array().unwrap().len(), 15);
        let (_, page) = body(app.get(&alice.token, &format!("/api/group_chats/{gid}/messages?limit=50")).await).await;
        assert_eq!(page["results"].as_array().unwrap().len(), 15);
    }

    async fn a_name_not_found_resolves_once_the_account_exists(app) {
        // Names are resolved through an in-process directory: a miss must not be
        // remembered, and a hit answers whatever case the name is written in.
        let alice = app.user("alice").await;
        let (s, b) = body(app.post_json(&alice.token, "/api/messages/?addressee_username=latecomer", &json!({ "content": "hi" })).await).await;
        assert_eq!((s, b["detail"].as_str()), (StatusCode::NOT_FOUND, Some("no such user exists")));
        let latecomer = app.user("latecomer").await;
        app.befriend(&alice, &latecomer).await;
        let (s, m) = body(app.post_json(&alice.token, "/api/messages/?addressee_username=latecomer", &json!({ "content": "now you exist" })).await).await;
        assert_eq!((s, m["reciever_id"].as_i64()), (StatusCode::CREATED, Some(latecomer.id)));
        let (s, m) = body(app.post_json(&alice.token, "/api/messages/?addressee_username=LateComer", &json!({ "content": "any case" })).await).await;
        assert_eq!((s, m["reciever_id"].as_i64()), (StatusCode::CREATED, Some(latecomer.id)));
        let (_, page) = body(app.get(&latecomer.token, "/api/messages/?friend_username=ALICE&limit=10").await).await;
        assert_eq!(page["results"].as_array().unwrap().len(), 2);
    }

    async fn the_conversation_page_renders_messages_safely(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        app.send_dm(&alice, &bob, "hello <b>bob</b>\nsecond line https://example.com/x?a=1&b=2").await;
        let browser = app.browser();
        browser.sign_in("bob", PASSWORD).await;
        let html = browser.get_html("/chats/@alice").await;
        assert!(html.contains("hello &lt;b&gt;bob&lt;/b&gt;\nsecond line"), "escaped, line break kept");
        assert!(!html.contains("<b>bob</b>"));
        assert!(html.contains(r#"<a href="https://example.com/x?a=1&amp;b=2" rel="noopener noreferrer nofollow""#));
        assert!(html.contains(r#"aria-live="polite""#));
        // Opening the conversation marked it seen.
        let (_, convs) = body(app.get(&bob.token, "/api/conversations").await).await;
        assert_eq!(convs[0]["unread"], 0);
        // A stranger's page is refused, and nobody reads a conversation that is not theirs.
        let carol = app.browser();
        carol.sign_up("carol").await;
        assert_eq!(carol.get("/chats/@alice").await.status(), StatusCode::NOT_FOUND);
        let (_, page) = body(app.get(&app.user("mallory").await.token, "/api/messages/?friend_username=alice&limit=50").await).await;
        assert_eq!(page["results"], json!([]), "a third party sees no messages between others");
    }
}

both_backends! {
    /// Through two server processes: 10 users in pairs send 100 messages each, concurrently;
    /// every recipient's stream and history hold every message once, in order.
    async fn pairs_sending_through_two_processes_lose_nothing(a) {
        let backend = a.backend;
        let b = spawn_app_on(a.database.clone(), &[]).await;
        let mut users = Vec::new();
        for i in 0..10 {
            users.push(a.user(&format!("pair{i}")).await);
        }
        for pair in users.chunks(2) {
            a.befriend(&pair[0], &pair[1]).await;
        }
        let mut streams = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let app = if i % 2 == 0 { &a } else { &b };
            streams.push(app.events(u, None).await);
        }
        let mut tasks = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let to = users[i ^ 1].username.clone();
            let base = if i % 2 == 0 { b.url("") } else { a.url("") };
            let (client, token) = (a.api.clone(), u.token.clone());
            tasks.push(tokio::spawn(async move {
                for n in 0..100 {
                    let r = client
                        .post(format!("{base}/api/messages/?addressee_username={to}"))
                        .bearer_auth(&token)
                        .json(&json!({ "content": format!("{n}") }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::CREATED);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Sent after all the others: what a stream has not had before it will not come.
        for (i, u) in users.iter().enumerate() {
            a.send_dm(&users[i ^ 1], u, "end").await;
        }
        for (i, stream) in streams.iter_mut().enumerate() {
            let me = &users[i];
            let other = &users[i ^ 1];
            let got = stream
                .until(&["message"], |e| {
                    message_with(e, "end") && e.json()["sender_id"].as_i64() == Some(other.id)
                })
                .await;
            let from_other: Vec<i64> = got
                .iter()
                .filter(|e| e.json()["sender_id"].as_i64() == Some(other.id))
                .map(|e| e.json()["content"].as_str().unwrap().parse().unwrap())
                .collect();
            assert_eq!(
                from_other,
                (0..100).collect::<Vec<_>>(),
                "{backend:?}: {} received everything once, in order",
                me.username
            );
            let mut history: HashMap<i64, usize> = HashMap::new();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!(
                        "/api/messages/?friend_username={}&limit=100&cursor={c}",
                        other.username
                    ),
                    None => format!(
                        "/api/messages/?friend_username={}&limit=100",
                        other.username
                    ),
                };
                let (_, page) = body(a.get(&me.token, &path).await).await;
                for m in page["results"].as_array().unwrap() {
                    *history
                        .entry(m["message_id"].as_i64().unwrap())
                        .or_default() += 1;
                }
                cursor = page["cursor"]["next_page"].as_str().map(String::from);
                if cursor.is_none() {
                    break;
                }
            }
            assert_eq!(
                history.len(),
                202,
                "{backend:?}: the whole conversation in history (and both end markers)"
            );
            assert!(history.values().all(|&n| n == 1));
        }
    }
}
