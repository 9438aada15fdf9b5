//! Friendships: the contract's status codes and texts, the state machine, paging,
//! races, blocking, search, and the page's actions.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::{both_backends, helpers::*};

async fn call(app: &TestApp, user: &ApiUser, method: &str, path: &str) -> (StatusCode, Value) {
    let r = match method {
        "GET" => app.get(&user.token, path).await,
        "POST" => app.post(&user.token, path).await,
        "DELETE" => app.delete(&user.token, path).await,
        _ => unreachable!(),
    };
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn expect(
    app: &TestApp,
    user: &ApiUser,
    method: &str,
    path: &str,
    status: StatusCode,
    detail: &str,
) {
    let (s, body) = call(app, user, method, path).await;
    assert_eq!(s, status, "{method} {path}: {body}");
    if !detail.is_empty() {
        assert_eq!(body["detail"], detail, "{method} {path}");
    }
}

async fn names(app: &TestApp, user: &ApiUser, path: &str) -> Vec<String> {
    let (s, body) = call(app, user, "GET", path).await;
    assert_eq!(s, StatusCode::OK, "{path}: {body}");
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect()
}

both_backends! {
    async fn the_contract_rows_for_requests(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let bad = StatusCode::BAD_REQUEST;
        let not_found = StatusCode::NOT_FOUND;
        expect(&app, &alice, "POST", "/api/friends/requests?username=alice", bad, "cannot send friendship request to yourself").await;
        expect(&app, &alice, "POST", "/api/friends/requests?username=nobody", not_found, "no such user exists").await;
        let (s, created) = call(&app, &alice, "POST", "/api/friends/requests?username=bob").await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!((created["requester_id"].as_i64(), created["addressee_id"].as_i64()), (Some(alice.id), Some(bob.id)));
        assert!(created["created_date_time"].is_string());
        expect(&app, &alice, "POST", "/api/friends/requests?username=bob", bad, "a friendship request was already sent").await;
        expect(&app, &bob, "POST", "/api/friends/requests?username=alice", bad, "a friendship request was already sent").await;
        assert_eq!(names(&app, &bob, "/api/friends/requests/senders?limit=10").await, ["alice"]);
        assert_eq!(names(&app, &alice, "/api/friends/requests/recievers?limit=10").await, ["bob"]);
        assert_eq!(names(&app, &alice, "/api/friends/requests/receivers?limit=10").await, ["bob"]);
        // Only the addressee answers.
        expect(&app, &alice, "POST", "/api/friends/requests/accept?requester_username=bob", not_found, "friendship was not found").await;
        expect(&app, &bob, "POST", "/api/friends/requests/accept?requester_username=nobody", not_found, "no such user exists").await;
        let (s, body) = call(&app, &bob, "POST", "/api/friends/requests/accept?requester_username=alice").await;
        assert_eq!((s, body), (StatusCode::CREATED, Value::Null));
        expect(&app, &bob, "POST", "/api/friends/requests/accept?requester_username=alice", bad, "friend request already addressed").await;
        expect(&app, &bob, "POST", "/api/friends/requests/decline?requester_username=alice", bad, "friend request already addressed").await;
        expect(&app, &alice, "POST", "/api/friends/requests?username=bob", bad, "you cannot send a friendship request").await;
        assert_eq!(names(&app, &alice, "/api/friends/?limit=10").await, ["bob"]);
        assert_eq!(names(&app, &bob, "/api/friends/?limit=10").await, ["alice"]);
        // Missing or bad limit and cursor.
        expect(&app, &alice, "GET", "/api/friends/", StatusCode::UNPROCESSABLE_ENTITY, "").await;
        expect(&app, &alice, "GET", "/api/friends/?limit=0", StatusCode::UNPROCESSABLE_ENTITY, "").await;
        expect(&app, &alice, "GET", "/api/friends/?limit=5&cursor=garbage", bad, "invalid cursor").await;
        // Delete: unknown user, no friendship, then unfriend.
        expect(&app, &alice, "DELETE", "/api/friends/requests?friend_username=nobody", not_found, "no such user exists").await;
        let carol = app.user("carol").await;
        expect(&app, &alice, "DELETE", "/api/friends/requests?friend_username=carol", not_found, "friendship was not found").await;
        let (s, _) = call(&app, &alice, "DELETE", "/api/friends/requests?friend_username=bob").await;
        assert_eq!(s, StatusCode::OK);
        assert!(names(&app, &bob, "/api/friends/?limit=10").await.is_empty());
        // After a delete they may start over.
        let (s, _) = call(&app, &bob, "POST", "/api/friends/requests?username=alice").await;
        assert_eq!(s, StatusCode::CREATED);
        let _ = carol;
    }

    async fn decline_block_and_unblock(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let bad = StatusCode::BAD_REQUEST;
        call(&app, &alice, "POST", "/api/friends/requests?username=bob").await;
        let (s, _) = call(&app, &bob, "POST", "/api/friends/requests/decline?requester_username=alice").await;
        assert_eq!(s, StatusCode::CREATED);
        expect(&app, &alice, "POST", "/api/friends/requests?username=bob", bad, "you cannot send a friendship request").await;
        assert!(names(&app, &bob, "/api/friends/requests/senders?limit=10").await.is_empty());
        // Block works with or without a friendship.
        let carol = app.user("carol").await;
        expect(&app, &carol, "POST", "/api/friends/requests/block?user_to_block_username=nobody", StatusCode::NOT_FOUND, "no such user exists").await;
        let (s, body) = call(&app, &carol, "POST", "/api/friends/requests/block?user_to_block_username=alice").await;
        assert_eq!((s, body), (StatusCode::CREATED, Value::Null));
        expect(&app, &carol, "POST", "/api/friends/requests/block?user_to_block_username=alice", bad, "friendship is blocked").await;
        expect(&app, &alice, "POST", "/api/friends/requests/block?user_to_block_username=carol", bad, "friendship is blocked").await;
        expect(&app, &alice, "POST", "/api/friends/requests?username=carol", bad, "you cannot send a friendship request").await;
        expect(&app, &carol, "POST", "/api/friends/requests?username=alice", bad, "you cannot send a friendship request").await;
        assert_eq!(names(&app, &carol, "/api/friends/blocked?limit=10").await, ["alice"]);
        assert!(names(&app, &alice, "/api/friends/blocked?limit=10").await.is_empty(), "the blocked user is not told");
        // Only the blocker unblocks; the blocked user cannot lift it by deleting either.
        expect(&app, &alice, "POST", "/api/friends/requests/unblock?username=carol", bad, "user is not blocked").await;
        expect(&app, &alice, "DELETE", "/api/friends/requests?friend_username=carol", StatusCode::NOT_FOUND, "friendship was not found").await;
        let (s, _) = call(&app, &carol, "POST", "/api/friends/requests/unblock?username=alice").await;
        assert_eq!(s, StatusCode::CREATED);
        assert!(names(&app, &carol, "/api/friends/blocked?limit=10").await.is_empty());
        let (s, _) = call(&app, &alice, "POST", "/api/friends/requests?username=carol").await;
        assert_eq!(s, StatusCode::CREATED, "after unblock the pair starts over");
        // Blocking a pending request, from the addressee's side.
        expect(&app, &carol, "POST", "/api/friends/requests/block?user_to_block_username=alice", StatusCode::CREATED, "").await;
        expect(&app, &carol, "POST", "/api/friends/requests/accept?requester_username=alice", bad, "friendship is blocked").await;
    }

    async fn a_blocked_user_cannot_request_message_find_or_see_the_blocker(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bobby").await;
        app.befriend(&alice, &bob).await;
        let mut bob_stream = app.events(&bob, None).await;
        let (s, _) = call(&app, &alice, "POST", "/api/friends/requests/block?user_to_block_username=bobby").await;
        assert_eq!(s, StatusCode::CREATED);
        // Bob hears only that the friendship is gone.
        let e = bob_stream.next_of(&["friendship"], Duration::from_secs(5)).await.expect("bob hears a change");
        assert_eq!(e.json()["status"], "removed");
        let r = app.send_dm(&bob, &alice, "hello?").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.json::<Value>().await.unwrap()["detail"], "you cannot message this person if you are not their friend");
        let found: Value = app.get(&bob.token, "/api/users/search?q=ali").await.json().await.unwrap();
        assert_eq!(found, serde_json::json!([]));
        let found: Value = app.get(&alice.token, "/api/users/search?q=bob").await.json().await.unwrap();
        assert_eq!(found[0]["username"], "bobby", "the blocker can still find the blocked");
        // Alice coming online is not announced to Bob. Once her friend Carol has heard it,
        // Carol's friend request to Bob is the marker.
        let carol = app.user("carol").await;
        app.befriend(&alice, &carol).await;
        let mut carol_stream = app.events(&carol, None).await;
        let _alice_stream = app.events(&alice, None).await;
        let e = carol_stream.next_of(&["presence"], Duration::from_secs(5)).await.expect("alice's friend hears her online");
        assert_eq!((e.json()["username"].as_str(), e.json()["status"].as_str()), (Some("alice"), Some("online")));
        call(&app, &carol, "POST", "/api/friends/requests?username=bobby").await;
        let heard = bob_stream.until(&["presence"], |e| e.event == "friend_request" && e.json()["username"] == "carol").await;
        assert!(heard.is_empty(), "{heard:?}");
    }

    async fn twenty_five_friends_page_by_ten_forward_and_back(app) {
        let me = app.user("pager").await;
        let mut expected = Vec::new();
        for i in 0..25 {
            let name = format!("friend{i:02}");
            let f = app.user(&name).await;
            app.befriend(&f, &me).await;
            expected.push(name);
        }
        let page = |cursor: Option<String>| {
            let path = match cursor { Some(c) => format!("/api/friends/?limit=10&cursor={c}"), None => "/api/friends/?limit=10".into() };
            let app = &app;
            let me = &me;
            async move {
                let (s, body) = call(app, me, "GET", &path).await;
                assert_eq!(s, StatusCode::OK);
                let names: Vec<String> = body["results"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect();
                (names, body["cursor"]["prev_page"].as_str().map(String::from), body["cursor"]["next_page"].as_str().map(String::from))
            }
        };
        let (p1, prev1, next1) = page(None).await;
        assert_eq!(p1, expected[0..10]);
        assert_eq!(prev1, None);
        assert_eq!(next1.as_deref(), Some("next___friend09"));
        let (p2, prev2, next2) = page(next1).await;
        assert_eq!(p2, expected[10..20]);
        let (p3, prev3, next3) = page(next2).await;
        assert_eq!(p3, expected[20..25]);
        assert_eq!(next3, None);
        let (back2, _, _) = page(prev3).await;
        assert_eq!(back2, p2);
        let (back1, back_prev, _) = page(prev2).await;
        assert_eq!(back1, p1);
        assert_eq!(back_prev, None, "the first page again has no prev");
    }

    async fn two_statuses_in_the_same_second_are_both_recorded_in_order(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        call(&app, &bob, "POST", "/api/friends/requests/block?user_to_block_username=alice").await;
        assert_eq!(app.count("friendship_status").await, 3);
        let codes: Vec<String> = match &app.db {
            messenger::db::Db::MySql(p) => sqlx::query_scalar("SELECT status_code_id FROM friendship_status ORDER BY specified_date_time").fetch_all(p).await.unwrap(),
            messenger::db::Db::Sqlite(p) => sqlx::query_scalar("SELECT status_code_id FROM friendship_status ORDER BY specified_date_time").fetch_all(p).await.unwrap(),
        };
        assert_eq!(codes, ["R", "A", "B"]);
    }

    async fn crossing_requests_and_double_accepts_end_in_one_state(app) {
        for round in 0..5 {
            let a = app.user(&format!("cross{round}a")).await;
            let b = app.user(&format!("cross{round}b")).await;
            let (to_b, to_a) = (format!("/api/friends/requests?username={}", b.username), format!("/api/friends/requests?username={}", a.username));
            let (ra, rb) = tokio::join!(app.post(&a.token, &to_b), app.post(&b.token, &to_a));
            let mut statuses = [ra.status(), rb.status()];
            statuses.sort();
            assert_eq!(statuses, [StatusCode::CREATED, StatusCode::BAD_REQUEST], "round {round}");
            let (requester, addressee) = if ra.status() == StatusCode::CREATED { (&a, &b) } else { (&b, &a) };
            let path = format!("/api/friends/requests/accept?requester_username={}", requester.username);
            let (x, y, z) = tokio::join!(app.post(&addressee.token, &path), app.post(&addressee.token, &path), app.post(&addressee.token, &path));
            let mut statuses = [x.status(), y.status(), z.status()];
            statuses.sort();
            assert_eq!(statuses, [StatusCode::CREATED, StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST], "round {round}");
        }
        assert_eq!(app.count("friendship").await, 5, "one row per pair");
        assert_eq!(app.count("friend_list").await, 10, "one list row per side of each pair");
        assert_eq!(app.count("friendship_status").await, 10);
        // Accept and block at the same moment: one wins, the pair is consistent.
        let a = app.user("racea").await;
        let b = app.user("raceb").await;
        call(&app, &a, "POST", "/api/friends/requests?username=raceb").await;
        let (x, y) = tokio::join!(
            app.post(&b.token, "/api/friends/requests/accept?requester_username=racea"),
            app.post(&a.token, "/api/friends/requests/block?user_to_block_username=raceb"),
        );
        assert!(x.status().is_success() || x.status() == StatusCode::BAD_REQUEST);
        assert_eq!(y.status(), StatusCode::CREATED, "block works whatever came first");
        assert!(names(&app, &b, "/api/friends/?limit=10").await.is_empty());
    }

    async fn many_pairs_befriending_at_once_all_succeed(app) {
        // Distinct pairs share no rows, so none may fail (MySQL once deadlocked on gap locks).
        let mut users = Vec::new();
        for i in 0..24 {
            users.push(app.user(&format!("many{i:02}")).await);
        }
        let mut requests = Vec::new();
        for pair in users.chunks(2) {
            let (client, url, token) = (app.api.clone(), app.url(&format!("/api/friends/requests?username={}", pair[1].username)), pair[0].token.clone());
            requests.push(tokio::spawn(async move { client.post(url).bearer_auth(token).send().await.unwrap().status() }));
        }
        for r in requests {
            assert_eq!(r.await.unwrap(), StatusCode::CREATED);
        }
        let mut accepts = Vec::new();
        for pair in users.chunks(2) {
            let (client, url, token) = (app.api.clone(), app.url(&format!("/api/friends/requests/accept?requester_username={}", pair[0].username)), pair[1].token.clone());
            accepts.push(tokio::spawn(async move { client.post(url).bearer_auth(token).send().await.unwrap().status() }));
        }
        for r in accepts {
            assert_eq!(r.await.unwrap(), StatusCode::CREATED);
        }
        assert_eq!(app.count("friend_list").await, 24);
    }

    async fn search_suggests_by_prefix_without_me_and_with_the_state(app) {
        let me = app.user("searcher").await;
        for name in ["sea_lion", "seal", "season", "otter"] {
            app.user(name).await;
        }
        let found: Value = app.get(&me.token, "/api/users/search?q=sea").await.json().await.unwrap();
        let mut names: Vec<&str> = found.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
        // MySQL's and SQLite's case-insensitive orders differ on `_`: compare as a set.
        names.sort();
        assert_eq!(names, ["sea_lion", "seal", "season"]);
        // `_` is a literal, not a wildcard.
        let found: Value = app.get(&me.token, "/api/users/search?q=sea_").await.json().await.unwrap();
        assert_eq!(found.as_array().unwrap().len(), 1);
        // The page's search shows the action that fits.
        let browser = app.browser();
        browser.sign_in("searcher", PASSWORD).await;
        let seal = app.sign_in_raw("seal@example.com", PASSWORD).await.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
        app.post(&seal, "/api/friends/requests?username=searcher").await;
        let html = browser.get_html("/friends/search?q=sea").await;
        assert!(html.contains("Accept seal"), "{html}");
        assert!(html.contains("Add sea_lion"), "{html}");
    }

    async fn the_friends_page_acts_without_javascript(app) {
        let browser = app.browser();
        browser.sign_up("pagealice").await;
        let bob = app.user("pagebob").await;
        let r = browser.post_form("/friends", "/friends/request", &[("username", "pagebob")]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let html = browser.get_html("/friends").await;
        assert!(html.contains(r#"id="sent-list""#) && html.contains("Cancel pagebob"));
        app.post(&bob.token, "/api/friends/requests/accept?requester_username=pagealice").await;
        let html = browser.get_html("/friends").await;
        assert!(html.contains(r#"href="/chats/@pagebob""#));
        // A stranger's action on someone else's request is refused and changes nothing.
        let r = browser.post_form("/friends", "/friends/accept", &[("username", "pagebob")]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.count("friendship_status").await, 2);
    }
}
