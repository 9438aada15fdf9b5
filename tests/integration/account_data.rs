//! Leaving and taking one's data: "Download my data" and "Delete my account", on the
//! pages and through the API. Direct conversations go with the account; group messages
//! stay for the others, shown as from "deleted user".

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

/// Alice (leaving), her friend Bob, and a group of the two with Carol; a message each way
/// between Alice and Bob and one from Alice and Carol in the group.
async fn scene(app: &TestApp) -> (ApiUser, ApiUser, ApiUser, i64) {
    let [alice, bob, carol] = [
        app.user("alice").await,
        app.user("bob").await,
        app.user("carol").await,
    ];
    app.befriend(&alice, &bob).await;
    app.befriend(&alice, &carol).await;
    assert_eq!(
        app.send_dm(&alice, &bob, "hello bob").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.send_dm(&bob, &alice, "hello alice").await.status(),
        StatusCode::CREATED
    );
    let group: Value = app
        .post_json(
            &alice.token,
            "/api/group_chats/",
            &json!({ "group_chat_name": "trio", "usernames": ["bob", "carol"] }),
        )
        .await
        .json()
        .await
        .unwrap();
    let g = group["group_chat_id"].as_i64().unwrap();
    for (who, text) in [
        (&alice, "alice in the group"),
        (&carol, "carol in the group"),
    ] {
        let r = app
            .post_json(
                &who.token,
                "/api/messages/",
                &json!({ "content": text, "group_chat_id": g }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    (alice, bob, carol, g)
}

fn contents(export: &Value) -> Vec<&str> {
    export["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect()
}

both_backends! {
    async fn download_my_data_holds_profile_friends_groups_and_every_message(app) {
        let (alice, _bob, _carol, g) = scene(&app).await;
        let check = |export: &Value| {
            assert_eq!(export["profile"]["username"], "alice");
            assert_eq!(export["profile"]["email"], "alice@example.com");
            assert!(export["profile"].get("password_hash").is_none());
            let friends: Vec<&str> = export["friends"].as_array().unwrap().iter().map(|f| f["username"].as_str().unwrap()).collect();
            assert_eq!(friends, ["bob", "carol"]);
            assert_eq!(export["groups"][0]["group_chat_id"], g);
            assert_eq!(export["groups"][0]["members"].as_array().unwrap().len(), 3);
            assert_eq!(contents(export), ["hello bob", "hello alice", "alice in the group", "carol in the group"]);
        };
        // API (a read-only token may export).
        let r = app.post_json(&alice.token, "/api/tokens", &json!({ "name": "export", "scope": "read" })).await;
        let read_only = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
        let r = app.get(&read_only, "/api/account/export").await;
        assert_eq!(r.status(), StatusCode::OK);
        let export: Value = r.json().await.unwrap();
        check(&export);
        assert_eq!(export["api_tokens"][0]["name"], "export");
        assert!(export["api_tokens"][0].get("token_hash").is_none());
        // Page: a file to download.
        let browser = app.browser();
        browser.sign_in("alice", PASSWORD).await;
        assert!(browser.get_html("/profile").await.contains(r#"href="/profile/export""#));
        let r = browser.get("/profile/export").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-disposition"], "attachment; filename=\"messenger-alice.json\"");
        assert_eq!(r.headers()["content-type"], "application/json");
        check(&r.json::<Value>().await.unwrap());
    }

    /// Each exported message has its reply, mentions and reactions, as the API shows it.
    async fn the_export_carries_replies_mentions_and_reactions(app) {
        let (alice, bob, carol, g) = scene(&app).await;
        let page: Value = app.get(&alice.token, &format!("/api/group_chats/{g}/messages?limit=10")).await.json().await.unwrap();
        let original = page["results"].as_array().unwrap().iter().find(|m| m["content"] == "alice in the group").unwrap()["message_id"].clone();
        let r = app.post_json(&bob.token, "/api/messages/", &json!({ "content": "yes @carol", "group_chat_id": g, "reply_to_message_id": original })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let reply: Value = r.json().await.unwrap();
        let r = app.post_json(&carol.token, &format!("/api/messages/{}/reactions", reply["message_id"]), &json!({ "emoji": "🎉" })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let export: Value = app.get(&alice.token, "/api/account/export").await.json().await.unwrap();
        let m = export["messages"].as_array().unwrap().iter().find(|m| m["message_id"] == reply["message_id"]).expect("the reply is exported");
        assert_eq!(m["reply_to_message_id"], original);
        assert_eq!(m["reply_to"]["excerpt"], "alice in the group");
        assert_eq!(m["mentions"][0]["username"], "carol");
        assert_eq!(m["reactions"][0]["emoji"], "🎉");
        assert_eq!(m["reactions"][0]["users"][0]["username"], "carol");
    }

    async fn deleting_an_account_keeps_group_messages_as_from_a_deleted_user(app) {
        let (alice, bob, carol, g) = scene(&app).await;
        let browser = app.browser();
        browser.sign_in("alice", PASSWORD).await;
        // The password is confirmed, and the box ticked.
        let r = browser.post_form("/profile", "/profile/delete", &[("password", "Wrong1password"), ("confirm", "yes")]).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().await.unwrap().contains("password is wrong"));
        let r = browser.post_form("/profile", "/profile/delete", &[("password", PASSWORD)]).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(app.sign_in_raw("alice@example.com", PASSWORD).await.status(), StatusCode::CREATED, "still there");
        let r = browser.post_form("/profile", "/profile/delete", &[("password", PASSWORD), ("confirm", "yes")]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), "/login?done=deleted");
        assert!(browser.get_html("/login?done=deleted").await.contains("Your account was deleted"));

        // Gone: no sign-in, no token, no name.
        assert_eq!(app.sign_in_raw("alice@example.com", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.get(&alice.token, "/api/users/").await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(browser.get("/chats").await.status(), StatusCode::SEE_OTHER);
        // Friendships and the direct conversation went with her.
        let friends: Value = app.get(&bob.token, "/api/friends/?limit=10").await.json().await.unwrap();
        assert_eq!(friends["results"], json!([]));
        let r = app.get(&bob.token, "/api/messages/?friend_username=alice&limit=10").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.count("friendship").await, 0);
        assert_eq!(app.count("friend_list").await, 0);
        // Her group message stays, from nobody; the group passes to Bob (lowest id).
        let history: Value = app.get(&carol.token, &format!("/api/group_chats/{g}/messages?limit=10")).await.json().await.unwrap();
        let texts: Vec<(&str, Value)> = history["results"].as_array().unwrap().iter().map(|m| (m["content"].as_str().unwrap(), m["sender_id"].clone())).collect();
        assert_eq!(texts, [("carol in the group", json!(carol.id)), ("alice in the group", Value::Null)]);
        let details: Value = app.get(&carol.token, &format!("/api/group_chats/{g}")).await.json().await.unwrap();
        assert_eq!(details["creator_id"], bob.id);
        assert_eq!(details["members"].as_array().unwrap().len(), 2);
        let page = {
            let carol_browser = app.browser();
            carol_browser.sign_in("carol", PASSWORD).await;
            carol_browser.get_html(&format!("/chats/g/{g}")).await
        };
        assert!(page.contains("deleted user") && page.contains("alice in the group"), "{page}");
        // The name is free again.
        assert_eq!(app.sign_up_raw("alice", "alice2@example.com", PASSWORD).await.status(), StatusCode::CREATED);
    }

    async fn the_api_deletes_an_account_with_its_password(app) {
        let (alice, bob, _carol, g) = scene(&app).await;
        // Bob leaves: a member of the group, not its creator.
        let r = app.call(reqwest::Method::DELETE, &bob.token, "/api/account", Some(&json!({ "password": "Wrong1password" }))).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.json::<Value>().await.unwrap()["detail"], "password is wrong");
        let r = app.post_json(&bob.token, "/api/tokens", &json!({ "name": "ro", "scope": "read" })).await;
        let read_only = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
        let r = app.call(reqwest::Method::DELETE, &read_only, "/api/account", Some(&json!({ "password": PASSWORD }))).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "a read-only token cannot delete");
        let r = app.call(reqwest::Method::DELETE, &bob.token, "/api/account", Some(&json!({ "password": PASSWORD }))).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(app.get(&read_only, "/api/users/").await.status(), StatusCode::UNAUTHORIZED);
        let export: Value = app.get(&alice.token, "/api/account/export").await.json().await.unwrap();
        assert_eq!(contents(&export), ["alice in the group", "carol in the group"], "the direct messages went");
        let details: Value = app.get(&alice.token, &format!("/api/group_chats/{g}")).await.json().await.unwrap();
        assert_eq!(details["creator_id"], alice.id, "the creator stays the creator");
        let conversations: Value = app.get(&alice.token, "/api/conversations").await.json().await.unwrap();
        assert_eq!(conversations.as_array().unwrap().len(), 1, "only the group: {conversations}");
    }

    async fn the_last_member_leaving_deletes_the_group(app) {
        let solo = app.user("solo").await;
        let group: Value = app.post_json(&solo.token, "/api/group_chats/", &json!({ "group_chat_name": "alone", "usernames": [] })).await.json().await.unwrap();
        let g = group["group_chat_id"].as_i64().unwrap();
        app.post_json(&solo.token, "/api/messages/", &json!({ "content": "echo", "group_chat_id": g })).await;
        let r = app.call(reqwest::Method::DELETE, &solo.token, "/api/account", Some(&json!({ "password": PASSWORD }))).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(app.count("group_chat").await, 0);
        assert_eq!(app.count("message").await, 0);
        assert_eq!(app.count("user").await, 0);
    }

    /// A deleted account's open streams end on every process, after an `account_deleted`
    /// event: a tab left open elsewhere stops hearing anything. Others' streams go on.
    async fn deleting_an_account_ends_its_streams_everywhere(app) {
        let other = spawn_app_on(app.database.clone(), &[]).await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let mut alices = other.events(&alice, None).await;
        let mut bobs = other.events(&bob, None).await;
        other.wait_for_streams(2).await;
        let r = app
            .call(reqwest::Method::DELETE, &alice.token, "/api/account", Some(&json!({ "password": PASSWORD })))
            .await;
        assert!(r.status().is_success(), "{}", r.status());
        let wait = std::time::Duration::from_secs(10);
        let last = alices.next_of(&["account_deleted"], wait).await.expect("account_deleted");
        assert_eq!(last.json()["user_id"], json!(alice.id));
        assert!(alices.next(wait).await.is_none(), "the stream ended");
        other.wait_for_streams(1).await;
        let e = bobs.next_of(&["friendship"], wait).await.expect("bob hears the friendship end");
        assert_eq!(e.json()["status"], "removed");
    }
}
