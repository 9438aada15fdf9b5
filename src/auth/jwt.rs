//! Bearer tokens: HS256 JWTs with the original's claims.
//!
//! Access tokens live 30 minutes. Socket tickets are shorter-lived JWTs with an extra
//! `purpose` claim; they open the event stream and nothing else. During a secret
//! rotation tokens signed with `JWT_SECRET_PREVIOUS` are still accepted.
//!
//! `user_id` is written as a string (`"3"`), as the original wrote it, since its clients
//! read the claims without verifying them; a number is accepted too (tokens issued
//! before this matched the original).
//!
//! Besides the original's claims a token carries `iat` and `fp`, the fingerprint of the
//! user's credentials when it was issued (`User::fingerprint`): the extractors refuse a
//! token whose fingerprint no longer matches, so a password change, a password reset or
//! "sign out everywhere" revokes every token issued before.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Secret;

const ACCESS_TOKEN_MINUTES: i64 = 30;
const TICKET_MINUTES: i64 = 5;
const TICKET_PURPOSE: &str = "event-stream";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    #[serde(with = "user_id_claim")]
    pub user_id: i64,
    pub username: String,
    pub email: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// The fingerprint of the user's credentials at issue time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

impl Claims {
    /// When the token was issued (Unix seconds): its expiry less its kind's lifetime.
    pub fn issued_at(&self) -> i64 {
        let minutes = match self.purpose.as_deref() {
            Some(TICKET_PURPOSE) => TICKET_MINUTES,
            _ => ACCESS_TOKEN_MINUTES,
        };
        self.exp - minutes * 60
    }
}

/// `user_id` as the original wrote it, a string of digits; read back from a string or
/// a number.
mod user_id_claim {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(user_id: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(user_id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(i64),
            Text(String),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(n) => Ok(n),
            Either::Text(text) => text.parse().map_err(D::Error::custom),
        }
    }
}

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
}

/// Which kind of token a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    EventTicket,
}

impl JwtKeys {
    pub fn new(current: &Secret, previous: Option<&Secret>) -> Self {
        let mut decoding = vec![DecodingKey::from_secret(current.expose().as_bytes())];
        if let Some(previous) = previous {
            decoding.push(DecodingKey::from_secret(previous.expose().as_bytes()));
        }
        Self {
            encoding: EncodingKey::from_secret(current.expose().as_bytes()),
            decoding,
        }
    }

    /// A token for `user`, bound to their current credentials.
    pub fn issue_for(&self, user: &crate::store::users::User, kind: TokenKind) -> String {
        self.sign(
            user.user_id.into(),
            &user.username,
            &user.email,
            Some(user.fingerprint()),
            kind,
        )
    }

    /// A token with the original's claims only, without a fingerprint: the extractors
    /// refuse it (for tests of what an old or forged token gets).
    pub fn issue(&self, user_id: i64, username: &str, email: &str, kind: TokenKind) -> String {
        self.sign(user_id, username, email, None, kind)
    }

    fn sign(
        &self,
        user_id: i64,
        username: &str,
        email: &str,
        fp: Option<String>,
        kind: TokenKind,
    ) -> String {
        let minutes = match kind {
            TokenKind::Access => ACCESS_TOKEN_MINUTES,
            TokenKind::EventTicket => TICKET_MINUTES,
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            user_id,
            username: username.to_string(),
            email: email.to_string(),
            exp: now + minutes * 60,
            iat: Some(now),
            fp,
            purpose: (kind == TokenKind::EventTicket).then(|| TICKET_PURPOSE.to_string()),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// The claims of a valid, unexpired token of the wanted kind, or `None`.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        let claims = self
            .decoding
            .iter()
            .find_map(|key| decode::<Claims>(token, key, &validation).ok())?
            .claims;
        let is_ticket = claims.purpose.as_deref() == Some(TICKET_PURPOSE);
        match kind {
            TokenKind::Access if !is_ticket && claims.purpose.is_none() => Some(claims),
            TokenKind::EventTicket if is_ticket => Some(claims),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&Secret::new(secret), None)
    }

    #[test]
    fn a_token_carries_the_originals_claims() {
        let k = keys("current-secret-0123456789");
        let t = k.issue(7, "alice", "alice@example.com", TokenKind::Access);
        let c = k.verify(&t, TokenKind::Access).unwrap();
        assert_eq!(
            (c.user_id, c.username.as_str(), c.email.as_str()),
            (7, "alice", "alice@example.com")
        );
    }

    #[test]
    fn wrong_secret_tampered_and_expired_tokens_are_refused() {
        let k = keys("current-secret-0123456789");
        let t = keys("another-secret-0123456789").issue(1, "a", "a@b.cd", TokenKind::Access);
        assert!(k.verify(&t, TokenKind::Access).is_none());
        let good = k.issue(1, "a", "a@b.cd", TokenKind::Access);
        let mut tampered = good.clone();
        tampered.replace_range(good.len() - 3.., "AAA");
        assert!(k.verify(&tampered, TokenKind::Access).is_none());
        let expired = Claims {
            user_id: 1,
            username: "a".into(),
            email: "a@b.cd".into(),
            exp: 1_000,
            iat: None,
            fp: None,
            purpose: None,
        };
        let expired = encode(
            &Header::default(),
            &expired,
            &EncodingKey::from_secret(b"current-secret-0123456789"),
        )
        .unwrap();
        assert!(k.verify(&expired, TokenKind::Access).is_none());
    }

    #[test]
    fn the_previous_secret_is_accepted_during_rotation() {
        let old = keys("previous-secret-0123456789");
        let rotated = JwtKeys::new(
            &Secret::new("current-secret-0123456789"),
            Some(&Secret::new("previous-secret-0123456789")),
        );
        let t = old.issue(3, "bob", "bob@example.com", TokenKind::Access);
        assert_eq!(rotated.verify(&t, TokenKind::Access).unwrap().user_id, 3);
    }

    #[test]
    fn user_id_is_a_string_as_the_originals_and_a_number_is_accepted() {
        let k = keys("current-secret-0123456789");
        let t = k.issue(3, "carol", "carol@example.com", TokenKind::Access);
        let payload = t.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&base64_url_decode(payload).expect("the payload is base64url"))
                .unwrap();
        assert_eq!(json["user_id"], "3");
        let numeric = serde_json::json!({
            "user_id": 3, "username": "carol", "email": "carol@example.com",
            "exp": time::OffsetDateTime::now_utc().unix_timestamp() + 60,
        });
        let numeric = encode(
            &Header::default(),
            &numeric,
            &EncodingKey::from_secret(b"current-secret-0123456789"),
        )
        .unwrap();
        assert_eq!(k.verify(&numeric, TokenKind::Access).unwrap().user_id, 3);
        let issued = k.verify(&t, TokenKind::Access).unwrap().issued_at();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((now - issued).abs() <= 1, "issued {issued}, now {now}");
    }

    fn base64_url_decode(text: &str) -> Option<Vec<u8>> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'-' => Some(62),
            b'_' => Some(63),
            _ => None,
        };
        let mut bits = 0u32;
        let mut count = 0;
        let mut out = Vec::new();
        for c in text.bytes() {
            bits = (bits << 6) | u32::from(value(c)?);
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
            }
        }
        Some(out)
    }

    #[test]
    fn a_ticket_is_not_an_access_token_and_back() {
        let k = keys("current-secret-0123456789");
        let ticket = k.issue(1, "a", "a@b.cd", TokenKind::EventTicket);
        assert!(k.verify(&ticket, TokenKind::Access).is_none());
        assert!(k.verify(&ticket, TokenKind::EventTicket).is_some());
        let access = k.issue(1, "a", "a@b.cd", TokenKind::Access);
        assert!(k.verify(&access, TokenKind::EventTicket).is_none());
    }
}
