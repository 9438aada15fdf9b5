//! Display names and avatar initials: shown in chats and lists beside the username, which
//! stays the handle (URLs, API, requests).

use reqwest::StatusCode;
use serde_json::Value;

use crate::{both_backends, helpers::*};

both_backends! {
    async fn a_display_name_shows_in_chats_and_lists_with_initials(app) {
        let bob = app.user("bob_b").await;
        let browser = app.browser();
        browser.sign_up("ada").await;
        let ada_token = app.sign_in_raw("ada@example.com", PASSWORD).await.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
        let ada = ApiUser { id: 0, username: "ada".into(), email: "ada@example.com".into(), token: ada_token };
        app.befriend(&ada, &bob).await;
        let long = "x".repeat(51);
        let r = browser.post_form("/profile", "/profile", &[("display_name", &long)]).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let r = browser.post_form("/profile", "/profile", &[("display_name", "Ada Lovelace"), ("first_name", ""), ("last_name", ""), ("birthdate", "")]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.text().await.unwrap().contains(r#"value="Ada Lovelace""#));
        assert_eq!(app.send_dm(&ada, &bob, "hello from ada").await.status(), StatusCode::CREATED);

        let bob_browser = app.browser();
        bob_browser.sign_in("bob_b", PASSWORD).await;
        let chats = bob_browser.get_html("/chats").await;
        assert!(chats.contains("Ada Lovelace") && chats.contains("@ada") && chats.contains(">AL</span>"), "{chats}");
        assert!(chats.contains(r#"href="/chats/@ada""#), "the handle stays the address");
        let conversation = bob_browser.get_html("/chats/@ada").await;
        assert!(conversation.contains("Ada Lovelace (@ada)"), "the title");
        let message = &conversation[conversation.find("hello from ada").unwrap().saturating_sub(600)..];
        assert!(message.contains(r#"class="sender">Ada Lovelace</span>"#) && message.contains("@ada"), "{message}");
        let friends = bob_browser.get_html("/friends").await;
        assert!(friends.contains("Ada Lovelace") && friends.contains(">AL</span>"));
        // Bob has none: his initials come from his username, in his colour everywhere.
        let ada_friends = browser.get_html("/friends").await;
        assert!(ada_friends.contains(">BB</span>") && ada_friends.contains("bob_b"));
        // The API: the username stays; the conversation list adds the display name.
        let list: Value = app.get(&bob.token, "/api/conversations").await.json().await.unwrap();
        assert_eq!(list[0]["name"], "ada");
        assert_eq!(list[0]["display_name"], "Ada Lovelace");
        let history: Value = app.get(&bob.token, "/api/messages/?friend_username=ada&limit=1").await.json().await.unwrap();
        assert_eq!(history["results"][0]["sender_username"], "ada");
        // Cleared: the username again.
        browser.post_form("/profile", "/profile", &[("display_name", "  ")]).await;
        assert!(!bob_browser.get_html("/chats").await.contains("Ada Lovelace"));
    }
}
