//! NATS JWTs (version 2), as `nsc` writes them: base64url header and
//! claims, and an ed25519 signature over both by the issuer's nkey.
//!
//! Only the claims the suite uses are modelled: an operator naming its
//! system account, accounts with JetStream enabled and no limits, and
//! users with publish and subscribe allow-lists. The claims' `jti` is the
//! base32 SHA-512/256 of the claims without it, as the Go library makes it.

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use nkeys::KeyPair;
use serde::Serialize;
use sha2::{Digest, Sha512_256};

use crate::identities::Permissions;

#[derive(Serialize)]
struct Claims<N> {
    jti: String,
    iat: u64,
    iss: String,
    name: String,
    sub: String,
    nats: N,
}

#[derive(Serialize)]
struct OperatorClaims {
    system_account: String,
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
}

#[derive(Serialize)]
struct AccountClaims {
    limits: AccountLimits,
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
}

/// `-1` is "no limit"; JetStream is on for an account whose storage
/// limits are not zero.
#[derive(Serialize)]
struct AccountLimits {
    subs: i64,
    data: i64,
    payload: i64,
    imports: i64,
    exports: i64,
    wildcards: bool,
    conn: i64,
    leaf: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    mem_storage: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_storage: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    streams: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumer: Option<i64>,
}

#[derive(Serialize)]
struct UserClaims {
    #[serde(rename = "pub")]
    publish: AllowList,
    #[serde(rename = "sub")]
    subscribe: AllowList,
    #[serde(skip_serializing_if = "Option::is_none")]
    resp: Option<Responses>,
    subs: i64,
    data: i64,
    payload: i64,
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
}

#[derive(Serialize)]
struct AllowList {
    allow: Vec<String>,
}

/// May answer each request it receives, once, within the server's default
/// window.
#[derive(Serialize)]
struct Responses {
    max: u32,
    ttl: u64,
}

/// Why a JWT could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign a JWT: {0}")]
pub struct SignError(String);

/// The operator's JWT, self-signed.
pub fn operator(
    operator: &KeyPair,
    name: &str,
    system_account: &str,
    now: u64,
) -> Result<String, SignError> {
    encode(
        operator,
        &operator.public_key(),
        name,
        now,
        OperatorClaims {
            system_account: system_account.to_owned(),
            kind: "operator",
            version: 2,
        },
    )
}

/// An account's JWT, signed by the operator; with JetStream when
/// `jetstream`.
pub fn account(
    operator: &KeyPair,
    account: &str,
    name: &str,
    jetstream: bool,
    now: u64,
) -> Result<String, SignError> {
    let unlimited = jetstream.then_some(-1);
    let limits = AccountLimits {
        subs: -1,
        data: -1,
        payload: -1,
        imports: -1,
        exports: -1,
        wildcards: true,
        conn: -1,
        leaf: -1,
        mem_storage: unlimited,
        disk_storage: unlimited,
        streams: unlimited,
        consumer: unlimited,
    };
    encode(
        operator,
        account,
        name,
        now,
        AccountClaims {
            limits,
            kind: "account",
            version: 2,
        },
    )
}

/// A user's JWT, signed by its account, carrying its permissions.
pub fn user(
    account: &KeyPair,
    user: &str,
    name: &str,
    permissions: &Permissions,
    now: u64,
) -> Result<String, SignError> {
    encode(
        account,
        user,
        name,
        now,
        UserClaims {
            publish: AllowList {
                allow: permissions.publish.clone(),
            },
            subscribe: AllowList {
                allow: permissions.subscribe.clone(),
            },
            resp: permissions.respond.then_some(Responses { max: 1, ttl: 0 }),
            subs: -1,
            data: -1,
            payload: -1,
            kind: "user",
            version: 2,
        },
    )
}

fn encode<N: Serialize>(
    issuer: &KeyPair,
    subject: &str,
    name: &str,
    now: u64,
    nats: N,
) -> Result<String, SignError> {
    let mut claims = Claims {
        jti: String::new(),
        iat: now,
        iss: issuer.public_key(),
        name: name.to_owned(),
        sub: subject.to_owned(),
        nats,
    };
    let unhashed = serde_json::to_vec(&claims).map_err(|e| SignError(e.to_string()))?;
    claims.jti = BASE32_NOPAD.encode(&Sha512_256::digest(&unhashed));
    let body = serde_json::to_vec(&claims).map_err(|e| SignError(e.to_string()))?;
    let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let signed = format!("{header}.{}", BASE64URL_NOPAD.encode(&body));
    let signature = issuer
        .sign(signed.as_bytes())
        .map_err(|e| SignError(e.to_string()))?;
    Ok(format!("{signed}.{}", BASE64URL_NOPAD.encode(&signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(jwt: &str) -> (serde_json::Value, Vec<u8>, Vec<u8>) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims = BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap();
        let signature = BASE64URL_NOPAD.decode(parts[2].as_bytes()).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]).into_bytes();
        (serde_json::from_slice(&claims).unwrap(), signed, signature)
    }

    #[test]
    fn a_user_jwt_is_signed_by_its_account_and_carries_its_allow_lists() {
        let account = KeyPair::new_account();
        let user = KeyPair::new_user();
        let permissions = Permissions {
            publish: vec!["orders.cmd.place".into()],
            subscribe: vec!["_INBOX.client.>".into()],
            respond: false,
        };
        let jwt = super::user(&account, &user.public_key(), "client", &permissions, 1).unwrap();
        let (claims, signed, signature) = decode(&jwt);
        account
            .verify(&signed, &signature)
            .expect("the account's signature");
        assert_eq!(claims["iss"], account.public_key());
        assert_eq!(claims["sub"], user.public_key());
        assert_eq!(claims["nats"]["type"], "user");
        assert_eq!(claims["nats"]["pub"]["allow"][0], "orders.cmd.place");
        assert_eq!(claims["nats"]["sub"]["allow"][0], "_INBOX.client.>");
        assert!(claims["nats"].get("resp").is_none());
        assert_eq!(claims["jti"].as_str().unwrap().len(), 52);
    }

    #[test]
    fn an_account_has_jetstream_only_when_asked() {
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account().public_key();
        let (with, ..) = decode(&super::account(&operator, &account, "A", true, 1).unwrap());
        let (without, ..) = decode(&super::account(&operator, &account, "S", false, 1).unwrap());
        assert_eq!(with["nats"]["limits"]["disk_storage"], -1);
        assert!(without["nats"]["limits"].get("disk_storage").is_none());
    }
}
