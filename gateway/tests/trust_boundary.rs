//! H1: nothing that arrives over the broker is trusted as an identity or as a key. The attacker
//! here holds the gateway's broker credentials (a compromised gateway pod) and sometimes more.
//! (That the broker itself refuses the gateway user consuming requests, publishing events or
//! writing to the default exchange is tested in `libs/bus/tests/acl.rs`.)

mod common;

use std::time::Duration;

use authstack_protocol::{Event, EventKind};
use common::*;
use serde_json::{Value, json};

/// Publishes `event` on the stack's events exchange over `conn`; `Err` when the broker refuses.
async fn publish_event(
    app: &TestApp,
    conn: &lapin::Connection,
    event: &Event,
) -> Result<(), lapin::Error> {
    let body = serde_json::to_vec(event).expect("an event serializes");
    authstack_testkit::broker::publish_confirmed(
        conn,
        &app.names.events_exchange,
        event.kind.routing_key(),
        &body,
    )
    .await
}

fn forged_rotation(app: &TestApp, key: &authstack_keyring::KeyMaterial) -> Event {
    let generation = app.gateway.keys.current().unwrap().generation + 100;
    Event::now(
        EventKind::KeysRotated,
        None,
        json!({
            "generation": generation,
            "active_kid": key.kid,
            "key_set": {
                "generation": generation,
                "algorithm": "EdDSA",
                "active_kid": key.kid,
                "keys": [key.public_jwk],
            },
        }),
    )
}

#[tokio::test]
async fn a_forged_keys_rotated_event_never_makes_an_attacker_token_valid() {
    let app = TestApp::spawn().await;
    let (account, _, _) = app.user("ada").await;
    let sub = account["id"].as_str().unwrap();
    let (token, key) = attacker_token(
        &claims_for(
            sub,
            &uuid::Uuid::new_v4().to_string(),
            &["user", "admin"],
            600,
        ),
        None,
    );
    let generation = app.gateway.keys.current().unwrap().generation;
    let event = forged_rotation(&app, &key);

    // With the gateway's broker credentials, the broker refuses the publish outright.
    let gateway_user = gateway_broker_connection().await;
    let refused = publish_event(&app, &gateway_user, &event).await;
    let e = refused.expect_err("the gateway's broker user must not publish events");
    assert!(e.to_string().contains("ACCESS_REFUSED"), "{e}");

    // Even if the event does get onto the exchange (here: published by the broker's
    // administrator, as if auth-svc's own broker credentials were stolen), its key set is
    // never adopted: events are only hints to ask auth-svc.
    let admin = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    publish_event(&app, &admin, &event).await.unwrap();
    for _ in 0..15 {
        app.get("/api/v1/auth/session", Some(&token))
            .await
            .assert_error(401, "auth.invalid_token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys = app.gateway.keys.current().unwrap();
    assert_eq!(
        keys.generation, generation,
        "the forged generation was adopted"
    );
    assert!(!keys.verifier.contains(&key.kid));
    let jwks = app.get("/.well-known/jwks.json", None).await;
    assert!(
        !jwks.body.to_string().contains(&key.kid),
        "attacker key published in the JWKS"
    );
    app.teardown().await;
}

/// A request as a compromised gateway would send it; `context` is whatever it claims.
fn request(method: &str, params: Value, context: Value) -> Value {
    json!({ "method": method, "params": params, "context": context })
}

/// The admin call `users.list` sent straight to auth-svc with `token` as the caller's.
async fn list_users_with(app: &TestApp, conn: &lapin::Connection, token: &str) -> Value {
    let context = json!({"request_id": "x", "access_token": token});
    raw_rpc(app, conn, &request("users.list", json!({}), context)).await
}

fn error_code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn forged_identities_in_rpc_requests_are_refused_by_auth_svc() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.admin("root").await;
    let (victim, victim_token, _) = app.user("vera").await;
    let admin_id = admin["id"].as_str().unwrap();
    let victim_id = victim["id"].as_str().unwrap();
    let conn = gateway_broker_connection().await;

    // The old wire shape: ids and roles in the context. Refused as malformed.
    let reply = raw_rpc(
        &app,
        &conn,
        &request(
            "users.list",
            json!({}),
            json!({"request_id": "x", "account_id": admin_id, "roles": ["admin"]}),
        ),
    )
    .await;
    assert_eq!(error_code(&reply), "validation.failed", "{reply}");

    // No token at all: nobody (the parameters are well-formed, so only the token decides).
    for (method, params) in [
        ("users.list", json!({})),
        ("users.get_me", Value::Null),
        (
            "users.delete_me",
            json!({"current_password": "any password"}),
        ),
        ("auth.logout_all", Value::Null),
    ] {
        let reply = raw_rpc(
            &app,
            &conn,
            &request(method, params, json!({"request_id": "x"})),
        )
        .await;
        assert_eq!(
            error_code(&reply),
            "auth.invalid_token",
            "{method}: {reply}"
        );
    }

    // A token of the attacker's own key claiming the admin, and one with a real kid but the
    // attacker's signature, and a genuine token with its payload edited to claim the admin.
    let admin_claims = claims_for(
        admin_id,
        &uuid::Uuid::new_v4().to_string(),
        &["user", "admin"],
        600,
    );
    let (own_key, _) = attacker_token(&admin_claims, None);
    let real_kid = app.ring.keys[0].kid.clone();
    let (real_kid_token, _) = attacker_token(&admin_claims, Some(&real_kid));
    let mut parts: Vec<String> = victim_token.split('.').map(str::to_owned).collect();
    let mut payload: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["sub"] = admin_id.into();
    payload["roles"] = json!(["user", "admin"]);
    parts[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&payload).unwrap(),
    );
    let tampered = parts.join(".");
    for (name, token) in [
        ("own key", own_key),
        ("real kid", real_kid_token),
        ("tampered", tampered),
    ] {
        let reply = list_users_with(&app, &conn, &token).await;
        assert_eq!(error_code(&reply), "auth.invalid_token", "{name}: {reply}");
    }

    // A stolen genuine user token buys that user's rights, no more.
    let reply = list_users_with(&app, &conn, &victim_token).await;
    assert_eq!(error_code(&reply), "auth.forbidden", "{reply}");

    // Nothing happened to the victim's account.
    let me = app.get("/api/v1/users/me", Some(&victim_token)).await;
    assert_eq!(me.body["id"], victim_id, "{}", me.body);
    app.teardown().await;
}

#[tokio::test]
async fn oversized_rpc_messages_are_refused_without_harm() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.user("otto").await;
    let conn = gateway_broker_connection().await;
    // 2 MiB of parameters: above the 1 MiB default limit.
    let huge = "x".repeat(2 * 1024 * 1024);
    let reply = raw_rpc(
        &app,
        &conn,
        &request(
            "auth.login",
            json!({"login": huge, "password": "p"}),
            json!({"request_id": "x"}),
        ),
    )
    .await;
    assert_eq!(error_code(&reply), "common.payload_too_large", "{reply}");
    // auth-svc is fine and keeps answering.
    let me = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(me.status, 200, "{}", me.body);
    app.teardown().await;
}
