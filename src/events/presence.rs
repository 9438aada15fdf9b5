//! Presence: a user is online while they hold a stream on any process.
//!
//! Each process keeps a `presence` row per user it holds streams of, renewed by a
//! heartbeat; a process that dies stops renewing and its rows expire, so nobody stays
//! online forever. Friends hear `online` on the first stream anywhere, and `offline`
//! once the last one has been closed for the grace period (a page navigation does not
//! flicker anyone offline).

use std::time::Duration;

use serde_json::json;

use super::EventHub;
use crate::{
    db::Db,
    store::{
        events::{self as event_store, NewEvent},
        friends, users,
    },
};

pub const HEARTBEAT: Duration = Duration::from_secs(10);
const TTL: Duration = Duration::from_secs(30);

pub struct Presence {
    db: Db,
    process_id: String,
    grace: Duration,
}

impl Presence {
    pub fn new(db: Db, process_id: String, grace: Duration) -> Self {
        Self {
            db,
            process_id,
            grace,
        }
    }

    fn expiry() -> time::PrimitiveDateTime {
        crate::db::now() + TTL
    }

    pub fn stream_opened(&self, user_id: i32, hub: EventHub) {
        let (db, process_id) = (self.db.clone(), self.process_id.clone());
        tokio::spawn(async move {
            match event_store::presence_claim(&db, user_id, &process_id, Self::expiry()).await {
                Ok(true) => announce(&db, &hub, user_id, "online").await,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, user_id, "presence claim failed"),
            }
        });
    }

    pub fn stream_closed(&self, user_id: i32, hub: EventHub) {
        let (db, process_id, grace) = (self.db.clone(), self.process_id.clone(), self.grace);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if hub.has_streams(user_id) {
                return;
            }
            match event_store::presence_release(&db, user_id, &process_id).await {
                Ok(true) => announce(&db, &hub, user_id, "offline").await,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, user_id, "presence release failed"),
            }
        });
    }

    pub async fn heartbeat(&self, hub: &EventHub) {
        let held = hub.users_with_streams();
        if let Err(e) =
            event_store::presence_renew(&self.db, &self.process_id, &held, Self::expiry()).await
        {
            tracing::warn!(error = %e, "presence heartbeat failed");
        }
        match event_store::presence_expire(&self.db).await {
            Ok(gone) => {
                for user_id in gone {
                    announce(&self.db, hub, user_id, "offline").await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "presence expiry failed"),
        }
    }
}

/// Tells `user_id`'s friends (accepted, so never a blocked user or a stranger) that
/// they came online or went offline.
async fn announce(db: &Db, hub: &EventHub, user_id: i32, status: &str) {
    let result = async {
        let Some(user) = users::by_id(db, user_id).await? else {
            return Ok(());
        };
        let friend_ids = friends::accepted_friend_ids(db, user_id).await?;
        let payload = json!({ "user_id": user_id, "username": user.username, "status": status });
        let events: Vec<NewEvent> = friend_ids
            .into_iter()
            .map(|f| NewEvent::new(f, "presence", &payload))
            .collect();
        event_store::write(db, &events).await
    }
    .await;
    match result {
        Ok(()) => hub.wake(),
        Err(e) => tracing::warn!(error = %e, user_id, status, "presence announcement failed"),
    }
}
