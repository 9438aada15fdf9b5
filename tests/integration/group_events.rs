//! Group events fan out on read: one `event` row per group event, routed by every process
//! to the streams of the group's members as they are when it is delivered, and replayed
//! to a member who resumes. A direct chat's events are one row for both sides too.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{both_backends, helpers::*, rich::group, search::to_group};

const WAIT: Duration = Duration::from_secs(10);

/// The rows of one kind in the outbox, straight from the database.
async fn event_rows(app: &TestApp, kind: &str) -> i64 {
    app.count(&format!("event WHERE kind = '{kind}'")).await
}

/// The contents of the group messages in `events`.
fn contents(events: &[Sse]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.json()["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

both_backends! {
    /// A direct message, a reaction to it and a read marker are one row each for both
    /// sides: both hear them live, whichever process holds their stream, and both replay
    /// them on resume, in order; a third user hears none of it.
    async fn a_direct_chats_events_are_one_row_heard_and_replayed_by_both_sides(a) {
        let b = spawn_app_on(a.database.clone(), &[]).await;
        let alice = a.user("alice").await;
        let bob = a.user("bob").await;
        let carol = a.user("carol").await;
        a.befriend(&alice, &bob).await;
        a.befriend(&alice, &carol).await;
        let mut alices = a.events(&alice, None).await;
        let mut bobs = b.events(&bob, None).await;
        let mut carols = b.events(&carol, None).await;
        let rows_before = event_rows(&a, "message").await;
        let r = a.send_dm(&alice, &bob, "one row").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let sent: Value = r.json().await.unwrap();
        let id = sent["message_id"].as_i64().unwrap();
        assert_eq!(event_rows(&a, "message").await, rows_before + 1, "one row for both sides");
        let r = b.post_json(&bob.token, &format!("/api/messages/{id}/reactions"), &json!({ "emoji": "👍" })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = b.post_json(&bob.token, "/api/messages/seen", &json!({ "message_id": id, "friend_username": "alice" })).await;
        assert_eq!(r.status(), StatusCode::OK);
        let kinds = ["message", "reaction", "seen"];
        let mut first_ids = Vec::new();
        for (who, stream) in [("alice", &mut alices), ("bob", &mut bobs)] {
            let mut heard = Vec::new();
            for _ in 0..3 {
                let e = stream.next_of(&kinds, WAIT).await.unwrap_or_else(|| panic!("{who} heard {heard:?} only"));
                heard.push((e.event.clone(), e.id));
            }
            assert_eq!(heard.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), kinds, "{who}");
            first_ids.push(heard[0].1.unwrap() - 1);
        }
        let r = a.send_dm(&alice, &carol, "marker").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let heard = carols.until(&kinds, |e| message_with(e, "marker")).await;
        assert!(heard.is_empty(), "carol heard {heard:?}");
        // Both resume from before the message, on the other process: the same three, in order.
        for (user, app, last) in [(&alice, &b, first_ids[0]), (&bob, &a, first_ids[1])] {
            let mut resumed = app.events(user, Some(last)).await;
            let mut replayed = Vec::new();
            for _ in 0..3 {
                let e = resumed.next_of(&kinds, WAIT).await.unwrap_or_else(|| panic!("{} replayed {replayed:?} only", user.username));
                replayed.push(e.event.clone());
            }
            assert_eq!(replayed, kinds, "{}", user.username);
        }
    }

    /// A message to a group of thirteen is one row, and it reaches every member, whichever
    /// process holds their stream, the one it mentions with `mentioned` set; nobody else.
    async fn a_group_message_is_one_row_heard_by_every_member_on_every_process(a) {
        let b = spawn_app_on(a.database.clone(), &[]).await;
        let alice = a.user("alice").await;
        let mut members = Vec::new();
        for n in 0..12 {
            members.push(a.user(&format!("member{n}")).await);
        }
        let outsider = a.user("outsider").await;
        a.befriend(&alice, &outsider).await;
        let g = group(&a, &alice, &members.iter().collect::<Vec<_>>(), "thirteen").await;
        let mut streams = Vec::new();
        for (n, m) in members.iter().enumerate() {
            let app = if n % 2 == 0 { &a } else { &b };
            streams.push(app.events(m, None).await);
        }
        let mut outsider_events = b.events(&outsider, None).await;
        let rows_before = event_rows(&a, "message").await;

        let sent = to_group(&a, &alice, g, "hello all, and @member3").await;
        assert_eq!(event_rows(&a, "message").await, rows_before + 1, "one row for thirteen members");
        for (n, stream) in streams.iter_mut().enumerate() {
            let e = stream.next_of(&["message"], WAIT).await.unwrap_or_else(|| panic!("member{n} heard nothing"));
            assert_eq!(e.json()["message_id"], sent["message_id"], "member{n}");
            assert_eq!(e.json()["mentioned"], n == 3, "member{n} is mentioned only if named");
        }
        // The outsider hears the next thing meant for them, and nothing of the group before.
        let r = a.send_dm(&alice, &outsider, "just you").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let heard = outsider_events.until(&["message"], |e| message_with(e, "just you")).await;
        assert!(heard.is_empty(), "an outsider heard {:?}", contents(&heard));
    }

    /// A member added through one process hears the next message on a stream held by
    /// another; a member removed stops hearing at once; typing reaches everyone but the
    /// one typing, as one row.
    async fn membership_changes_route_the_next_group_event_on_every_process(a) {
        let b = spawn_app_on(a.database.clone(), &[]).await;
        let alice = a.user("alice").await;
        let bob = a.user("bob").await;
        let carol = a.user("carol").await;
        let g = group(&a, &alice, &[&bob], "changing").await;
        a.befriend(&alice, &carol).await;
        let mut bob_events = b.events(&bob, None).await;
        let mut carol_events = b.events(&carol, None).await;
        let mut alice_events = a.events(&alice, None).await;

        to_group(&a, &alice, g, "before carol").await;
        assert!(bob_events.next_of(&["message"], WAIT).await.is_some());
        let r = a.post_json(&alice.token, &format!("/api/group_chats/{g}/members"), &json!({ "username": "carol" })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        to_group(&a, &alice, g, "with carol").await;
        let heard = carol_events.until(&["message", "group_chat"], |e| message_with(e, "with carol")).await;
        let (changes, messages): (Vec<Sse>, Vec<Sse>) = heard.into_iter().partition(|e| e.event == "group_chat");
        assert!(messages.is_empty(), "carol heard what came before she joined: {:?}", contents(&messages));
        // She hears that she was added, not the others' news that she joined.
        let changes: Vec<Value> = changes.iter().map(|e| e.json()["change"].clone()).collect();
        assert_eq!(changes, [json!("added")]);

        // Typing: one row, heard by the others, not by the one typing.
        let typing_before = event_rows(&a, "typing").await;
        let r = a.post_json(&carol.token, "/api/typing", &json!({ "group_chat_id": g })).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(event_rows(&a, "typing").await, typing_before + 1);
        let e = bob_events.next_of(&["typing"], WAIT).await.expect("bob hears carol typing");
        assert_eq!(e.json()["username"], "carol");
        assert_eq!(e.json()["group_chat_id"].as_i64(), Some(g));
        to_group(&a, &bob, g, "bob answers").await;
        let typing = carol_events.until(&["typing"], |e| message_with(e, "bob answers")).await;
        assert!(typing.is_empty(), "carol heard her own typing");
        assert!(!alice_events.until(&["typing"], |e| message_with(e, "bob answers")).await.is_empty(), "alice hears carol typing");
        bob_events.until(&[], |e| message_with(e, "bob answers")).await;

        // Removed through b: the next message through a does not reach bob's stream on b.
        let r = b.delete(&alice.token, &format!("/api/group_chats/{g}/members/bob")).await;
        assert_eq!(r.status(), StatusCode::OK);
        to_group(&a, &alice, g, "without bob").await;
        assert!(carol_events.next_of(&["message"], WAIT).await.is_some_and(|e| message_with(&e, "without bob")));
        let r = a.send_dm(&alice, &bob, "marker for bob").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let heard = bob_events.until(&["message"], |e| message_with(e, "marker for bob")).await;
        assert!(heard.is_empty(), "a removed member heard {:?}", contents(&heard));
    }

    /// A member who resumes gets the group's events they missed, in order, each as they
    /// hear it (`mentioned`); one who left meanwhile gets none of them.
    async fn resuming_replays_the_groups_one_is_a_member_of_now(a) {
        let alice = a.user("alice").await;
        let bob = a.user("bob").await;
        let carol = a.user("carol").await;
        let g = group(&a, &alice, &[&bob, &carol], "resume").await;
        let mut bob_events = a.events(&bob, None).await;
        let mut carol_events = a.events(&carol, None).await;
        to_group(&a, &alice, g, "seen live").await;
        let bob_last = bob_events.next_of(&["message"], WAIT).await.unwrap().id.unwrap();
        let carol_last = carol_events.next_of(&["message"], WAIT).await.unwrap().id.unwrap();
        drop(bob_events);
        drop(carol_events);
        a.wait_for_streams(0).await;

        let r = a.post(&carol.token, &format!("/api/group_chats/{g}/leave")).await;
        assert_eq!(r.status(), StatusCode::OK);
        to_group(&a, &alice, g, "first missed, @bob").await;
        let second = to_group(&a, &alice, g, "second missed").await;
        let r = a.post_json(&alice.token, &format!("/api/messages/{}/reactions", second["message_id"]), &json!({ "emoji": "👍" })).await;
        assert!(r.status().is_success(), "{}", r.status());

        let mut bob_events = a.events(&bob, Some(bob_last)).await;
        let first = bob_events.next_of(&["message"], WAIT).await.unwrap();
        assert_eq!(first.json()["content"], "first missed, @bob");
        assert_eq!(first.json()["mentioned"], true);
        let next = bob_events.next_of(&["message"], WAIT).await.unwrap();
        assert_eq!(next.json()["content"], "second missed");
        assert_eq!(next.json()["mentioned"], false);
        let reaction = bob_events.next_of(&["reaction"], WAIT).await.expect("the reaction replayed");
        assert_eq!(reaction.json()["message_id"], second["message_id"]);
        assert!(first.id < next.id && next.id < reaction.id, "in order");

        // Carol left before they were sent: her replay holds none of them.
        let mut carol_events = a.events(&carol, Some(carol_last)).await;
        let r = a.send_dm(&alice, &carol, "marker for carol").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let heard = carol_events.until(&["message"], |e| message_with(e, "marker for carol")).await;
        assert!(heard.is_empty(), "a former member replayed {:?}", contents(&heard));
    }
}
