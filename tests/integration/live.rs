//! Live events: delivery across processes, order and exactly-once under concurrent
//! writers, resume, retention, presence, and what a stream may contain.

use std::{collections::HashMap, sync::Arc, time::Duration};

use reqwest::StatusCode;

use crate::{both_backends, helpers::*, integration_test};

both_backends! {
    async fn an_event_written_through_one_process_reaches_a_stream_on_another(app) {
        let other = spawn_app_on(app.database.clone(), &[]).await;
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let mut bob_on_b = other.events(&bob, None).await;
        let r = app.post(&alice.token, "/api/friends/requests?username=bob").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let e = bob_on_b.next_of(&["friend_request"], Duration::from_secs(5)).await.expect("delivered across processes");
        assert_eq!(e.json(), serde_json::json!({ "user_id": alice.id, "username": "alice" }));
        assert!(e.id.is_some());
    }

    async fn concurrent_writers_through_two_processes_deliver_every_event_once_in_order(app) {
        let other = spawn_app_on(app.database.clone(), &[]).await;
        let hub = app.user("hub").await;
        let mut writers = Vec::new();
        for i in 0..10 {
            let w = app.user(&format!("writer{i}")).await;
            app.befriend(&w, &hub).await;
            writers.push(w);
        }
        let mut on_a = app.events(&hub, None).await;
        let mut on_b = other.events(&hub, None).await;
        let apps = [Arc::new(app.url("")), Arc::new(other.url(""))];
        let mut tasks = Vec::new();
        for (i, w) in writers.iter().enumerate() {
            let base = apps[i % 2].clone();
            let token = w.token.clone();
            let client = app.api.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..50 {
                    let r = client.post(format!("{base}/api/messages/?addressee_username=hub")).bearer_auth(&token)
                        .json(&serde_json::json!({ "content": format!("w{i} n{n}") })).send().await.unwrap();
                    assert_eq!(r.status(), StatusCode::CREATED);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Sent after every other message: what has not come before it will not come.
        assert_eq!(app.send_dm(&writers[0], &hub, "end").await.status(), StatusCode::CREATED);
        for stream in [&mut on_a, &mut on_b] {
            let got = stream.until(&["message"], |e| message_with(e, "end")).await;
            assert_eq!(got.len(), 500, "every message exactly once");
            let ids: Vec<i64> = got.iter().map(|e| e.id.unwrap()).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "event ids strictly increasing");
            let mut per_writer: HashMap<String, Vec<i64>> = HashMap::new();
            for e in &got {
                let content = e.json()["content"].as_str().unwrap().to_string();
                let (w, n) = content.split_once(' ').unwrap();
                per_writer.entry(w.to_string()).or_default().push(n[1..].parse().unwrap());
            }
            for (w, ns) in per_writer {
                assert_eq!(ns, (0..50).collect::<Vec<_>>(), "{w}'s messages in the order sent");
            }
        }
    }

    async fn a_stream_that_reconnects_with_its_last_id_misses_nothing(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let mut stream = app.events(&bob, None).await;
        for n in 0..20 {
            app.send_dm(&alice, &bob, &format!("m{n}")).await;
        }
        let mut seen = Vec::new();
        let mut last = None;
        for _ in 0..7 {
            let e = stream.next_of(&["message"], Duration::from_secs(5)).await.unwrap();
            last = e.id;
            seen.push(e.json()["content"].as_str().unwrap().to_string());
        }
        drop(stream);
        for n in 20..30 {
            app.send_dm(&alice, &bob, &format!("m{n}")).await;
        }
        app.send_dm(&alice, &bob, "end").await;
        let mut resumed = app.events(&bob, last).await;
        for e in resumed.until(&["message"], |e| message_with(e, "end")).await {
            seen.push(e.json()["content"].as_str().unwrap().to_string());
        }
        let expected: Vec<String> = (0..30).map(|n| format!("m{n}")).collect();
        assert_eq!(seen, expected, "nothing lost, nothing repeated");
        // The same through ?last_event_id= and the browser's header name.
        let r = app.api.get(app.url(&format!("/api/events?last_event_id={}", last.unwrap()))).bearer_auth(&bob.token).send().await.unwrap();
        let mut by_query = EventStream::new(r);
        assert_eq!(by_query.until(&["message"], |e| message_with(e, "end")).await.len(), 23);
    }

    async fn an_id_older_than_retention_gets_reset(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let mut stream = app.events(&bob, None).await;
        app.send_dm(&alice, &bob, "old").await;
        let first = stream.next_of(&["message"], Duration::from_secs(5)).await.unwrap().id.unwrap();
        drop(stream);
        app.send_dm(&alice, &bob, "newer").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let cutoff = messenger::db::now() + time::Duration::seconds(1);
        messenger::store::events::prune(&app.db, cutoff, i64::MAX).await.unwrap();
        app.send_dm(&alice, &bob, "after the prune").await;
        let mut resumed = app.events(&bob, Some(first - 1)).await;
        let e = resumed.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(e.event, "reset");
    }

    async fn a_stream_further_behind_than_the_retained_rows_gets_reset(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        app.befriend(&alice, &bob).await;
        let mut stream = app.events(&bob, None).await;
        app.send_dm(&alice, &bob, "one").await;
        let first = stream.next_of(&["message"], Duration::from_secs(5)).await.unwrap().id.unwrap();
        drop(stream);
        for text in ["two", "three", "four"] {
            app.send_dm(&alice, &bob, text).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Nothing is old enough by age; only the newest 2 rows are kept.
        let long_ago = messenger::db::now() - time::Duration::days(1);
        let pruned = messenger::store::events::prune(&app.db, long_ago, 2).await.unwrap();
        assert!(pruned >= 2, "pruned {pruned}");
        let mut resumed = app.events(&bob, Some(first)).await;
        assert_eq!(resumed.next(Duration::from_secs(5)).await.unwrap().event, "reset");
        // A stream that is not behind the kept rows resumes as before.
        let newest = messenger::store::events::max_position(&app.db).await.unwrap();
        let mut current = app.events(&bob, Some(newest)).await;
        app.send_dm(&alice, &bob, "five").await;
        let e = current.next_of(&["message"], Duration::from_secs(5)).await.unwrap();
        assert!(e.data.contains("five"), "{}", e.data);
    }

    async fn presence_goes_to_friends_only(app) {
        let alice = app.user("alice").await;
        let friend = app.user("friend").await;
        let stranger = app.user("stranger").await;
        let blocked = app.user("blocked").await;
        app.befriend(&alice, &friend).await;
        app.befriend(&alice, &blocked).await;
        app.post(&alice.token, "/api/friends/requests/block?user_to_block_username=blocked").await;
        let mut f = app.events(&friend, None).await;
        let mut s = app.events(&stranger, None).await;
        let mut b = app.events(&blocked, None).await;
        let alice_stream = app.events(&alice, None).await;
        let e = f.next_of(&["presence"], Duration::from_secs(5)).await.expect("the friend sees alice online");
        assert_eq!(e.json(), serde_json::json!({ "user_id": alice.id, "username": "alice", "status": "online" }));
        // A second tab is not a second "online".
        let second_tab = app.events(&alice, None).await;
        drop(second_tab);
        drop(alice_stream);
        // Offline after the grace period (1 s in tests) once the last stream closed.
        let e = f.next_of(&["presence"], Duration::from_secs(6)).await.expect("then offline");
        assert_eq!(e.json()["status"], "offline");
        // Both announcements are written by now; a friend request sent afterwards is the marker.
        let herald = app.user("herald").await;
        for (stream, name) in [(&mut s, "stranger"), (&mut b, "blocked")] {
            app.post(&herald.token, &format!("/api/friends/requests?username={name}")).await;
            let heard = stream.until(&["presence"], |e| e.event == "friend_request").await;
            assert!(heard.is_empty(), "{name} hears nothing: {heard:?}");
        }
    }

    async fn a_page_navigation_does_not_flicker_presence(app) {
        let alice = app.user("alice").await;
        let carol = app.user("carol").await;
        let friend = app.user("friend").await;
        app.befriend(&alice, &friend).await;
        app.befriend(&carol, &friend).await;
        let mut f = app.events(&friend, None).await;
        let first = app.events(&alice, None).await;
        assert_eq!(f.next_of(&["presence"], Duration::from_secs(5)).await.unwrap().json()["status"], "online");
        drop(first);
        let _next_page = app.events(&alice, None).await;
        // The server has let go of the first page's stream: any offline timer of alice's runs.
        app.wait_for_streams(2).await;
        // The marker: carol's offline, whose grace timer starts after alice's would have.
        let carol_stream = app.events(&carol, None).await;
        let mut heard = f.until(&["presence"], |e| e.json() == serde_json::json!({ "user_id": carol.id, "username": "carol", "status": "online" })).await;
        drop(carol_stream);
        heard.extend(f.until(&["presence"], |e| e.json() == serde_json::json!({ "user_id": carol.id, "username": "carol", "status": "offline" })).await);
        assert!(heard.is_empty(), "no offline/online flicker: {heard:?}");
    }

    async fn typing_reaches_the_friend_live_and_is_not_replayed(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let stranger = app.user("stranger").await;
        app.befriend(&alice, &bob).await;
        let mut bob_stream = app.events(&bob, None).await;
        let before = app.hub.watermark();
        let r = app.post_json(&alice.token, "/api/typing", &serde_json::json!({ "friend_username": "bob" })).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let e = bob_stream.next_of(&["typing"], Duration::from_secs(5)).await.expect("bob sees alice typing");
        assert_eq!(e.json()["username"], "alice");
        assert_eq!(e.json()["user_id"].as_i64(), Some(alice.id));
        let r = app.post_json(&stranger.token, "/api/typing", &serde_json::json!({ "friend_username": "bob" })).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "strangers cannot type at bob");
        drop(bob_stream);
        // The marker: a message after the typing, replayed after it if typing were.
        app.send_dm(&alice, &bob, "after typing").await;
        let mut resumed = app.events(&bob, Some(before)).await;
        let replayed = resumed.until(&["typing"], |e| message_with(e, "after typing")).await;
        assert!(replayed.is_empty(), "typing is live only: {replayed:?}");
    }

    async fn a_stream_contains_only_its_users_events(app) {
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        let carol = app.user("carol").await;
        app.befriend(&alice, &bob).await;
        let mut carol_stream = app.events(&carol, None).await;
        app.send_dm(&alice, &bob, "private").await;
        // The friend request, sent after the message, is the marker.
        app.post(&alice.token, "/api/friends/requests?username=carol").await;
        let got = carol_stream.until(&["message", "friend_request", "friendship", "presence", "seen", "typing"], |e| e.event == "friend_request" && e.json()["username"] == "alice").await;
        assert!(got.is_empty(), "{got:?}");
    }

    async fn streams_end_promptly_on_shutdown_with_a_retry_hint(app) {
        let mut app = app;
        let alice = app.user("alice").await;
        let r = app.api.get(app.url("/api/events")).bearer_auth(&alice.token).send().await.unwrap();
        assert_eq!(r.headers()["cache-control"], "no-cache");
        assert_eq!(r.headers()["x-accel-buffering"], "no");
        let reader = tokio::spawn(async move {
            let mut r = r;
            let mut text = String::new();
            while let Ok(Some(chunk)) = r.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
            text
        });
        let started = std::time::Instant::now();
        app.stop().await;
        let text = tokio::time::timeout(Duration::from_secs(5), reader).await.expect("stream ended").unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(text.contains("retry:"), "{text}");
    }
}

integration_test! {
    /// The outbox hazard: an id that commits after a higher one is still delivered, in the
    /// order the two committed (stream positions follow commits; see `events`).
    /// (MySQL only: SQLite serializes writers, so its ids cannot commit out of order.)
    #[needs(mysql)]
    async fn an_event_id_that_commits_late_is_not_skipped() {
        let app = spawn_app(Backend::MySql).await;
        let bob = app.user("bob").await;
        let mut stream = app.events(&bob, None).await;
        let messenger::db::Db::MySql(pool) = &app.db else {
            unreachable!()
        };
        // Transaction 1 takes an id and holds it uncommitted…
        let mut slow = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO event (user_id, kind, payload, created_date_time) VALUES (?, 'typing', '{\"n\":1}', NOW(6))")
            .bind(bob.id).execute(&mut *slow).await.unwrap();
        // …while transaction 2 takes the next id and commits first.
        sqlx::query("INSERT INTO event (user_id, kind, payload, created_date_time) VALUES (?, 'typing', '{\"n\":2}', NOW(6))")
            .bind(bob.id).execute(pool).await.unwrap();
        app.db.ping().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        slow.commit().await.unwrap();
        let first = stream
            .next_of(&["typing"], Duration::from_secs(5))
            .await
            .unwrap();
        let second = stream
            .next_of(&["typing"], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            (first.json()["n"].as_i64(), second.json()["n"].as_i64()),
            (Some(2), Some(1))
        );
        assert!(first.id < second.id, "positions follow commit order");
    }

    /// A whole tailer batch for one user at once (a thousand friends coming online after a
    /// deploy) reaches a stream that reads, which is not dropped for it.
    async fn a_burst_of_a_whole_batch_for_one_user_reaches_a_reading_stream() {
        let app = spawn_app(Backend::Sqlite).await;
        let bob = app.user("bob").await;
        let mut stream = app.events(&bob, None).await;
        let batch: Vec<_> = (0..messenger::events::TAIL_BATCH)
            .map(|n| messenger::store::events::NewEvent::new(bob.id as i32, "presence", &serde_json::json!({ "user_id": n, "status": "online" })))
            .collect();
        messenger::store::events::write(&app.db, &batch).await.unwrap();
        app.hub.wake();
        for n in 0..messenger::events::TAIL_BATCH {
            let e = stream.next_of(&["presence"], Duration::from_secs(10)).await;
            assert_eq!(e.map(|e| e.json()["user_id"].as_i64()), Some(Some(n)), "event {n} on the same stream");
        }
        assert_eq!(app.hub.stream_count(), 1);
    }

    async fn a_client_that_stops_reading_is_disconnected_not_buffered_forever() {
        let app = spawn_app(Backend::Sqlite).await;
        let bob = app.user("bob").await;
        // Open a stream and never read it.
        let unread = app
            .api
            .get(app.url("/api/events"))
            .bearer_auth(&bob.token)
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(app.hub.stream_count(), 1);
        let payload = serde_json::json!({ "pad": "x".repeat(4000) });
        let batch: Vec<_> = (0..200)
            .map(|_| messenger::store::events::NewEvent::new(bob.id as i32, "typing", &payload))
            .collect();
        for _ in 0..40 {
            messenger::store::events::write(&app.db, &batch)
                .await
                .unwrap();
            app.hub.wake();
        }
        let mut dropped = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if app.hub.stream_count() == 0 {
                dropped = true;
                break;
            }
        }
        drop(unread);
        assert!(
            dropped,
            "a stream that does not read is dropped once its buffer is full"
        );
    }
}
