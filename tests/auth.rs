//! Authentication against a second local Kuzzle that has a first admin (so
//! anonymous is refused there), started by the stack script on other ports.

mod common;

use common::*;
use kuzzle::kuzzle_status as S;
use serde_json::json;
use std::sync::OnceLock;

fn auth_stack() -> &'static (Stack, String, String, String) {
    static STACK: OnceLock<(Stack, String, String, String)> = OnceLock::new();
    STACK.get_or_init(|| {
        let stack = Stack {
            name: "auth",
            port: 7522,
            redis_port: 6392,
            storage_port: 9222,
            // Short-lived tokens, to see them renewed.
            rc_extra: Some(r#"{"security":{"authToken":{"expiresIn":"3s"}}}"#.into()),
        };
        stack.start();
        let (user, password, key) = stack.admin();
        (stack, user, password, key)
    })
}

fn cfg(extra: serde_json::Value) -> serde_json::Value {
    let (stack, ..) = auth_stack();
    let mut c = stack.config();
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

#[test]
fn username_and_password_log_in_and_write() {
    let (_, user, password, _) = auth_stack();
    let h = connect(&cfg(json!({"username": user, "password": password})));
    let index = fresh_index(&h, "login");
    let (s, r) = h.mwrite(&index, "c", &sensor_docs(20, Some("l")), None);
    assert_eq!(s, S::KUZZLE_OK, "{r}");
    assert_eq!(h.count(&index, "c"), 20);
}

#[test]
fn api_key_writes() {
    let (_, _, _, key) = auth_stack();
    let h = connect(&cfg(json!({"apiKey": key})));
    let index = fresh_index(&h, "apikey");
    let (s, r) = h.mwrite(&index, "c", &sensor_docs(5, None), None);
    assert_eq!(s, S::KUZZLE_OK, "{r}");
}

#[test]
fn bad_password_is_an_auth_error_without_the_password() {
    let (_, user, ..) = auth_stack();
    let (s, e) = try_connect(&cfg(
        json!({"username": user, "password": "Wr0ng-s3cret-pw"}),
    ))
    .err()
    .unwrap();
    assert_eq!(s, S::KUZZLE_ERR_AUTH, "{e}");
    assert_eq!(e["error"]["status"], 401);
    assert!(!e.to_string().contains("Wr0ng-s3cret-pw"));
}

#[test]
fn bad_api_key_is_an_auth_error_without_the_key() {
    let (s, e) = try_connect(&cfg(json!({"apiKey": "not-a-valid-s3cret-token"})))
        .err()
        .unwrap();
    assert_eq!(s, S::KUZZLE_ERR_AUTH, "{e}");
    assert!(!e.to_string().contains("s3cret"));
}

#[test]
fn anonymous_is_refused_once_an_admin_exists() {
    let (_, user, password, _) = auth_stack();
    let admin = connect(&cfg(json!({"username": user, "password": password})));
    let index = fresh_index(&admin, "anon");
    let anon = connect(&cfg(json!({})));
    let (s, r) = anon.mwrite(&index, "c", &sensor_docs(3, Some("a")), None);
    assert_eq!(s, S::KUZZLE_ERR_AUTH, "{r}");
    assert_eq!(arr_len(&r, "errors"), 3);
    assert_eq!(r["error"]["status"], 401);
    assert_eq!(admin.count(&index, "c"), 0);
}

#[test]
fn expiring_jwt_is_renewed_transparently() {
    let (_, user, password, _) = auth_stack();
    let h = connect(&cfg(json!({"username": user, "password": password})));
    let index = fresh_index(&h, "expiry");
    // Tokens live 3 s on this stack: the one from connect is dead by now.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let (s, r) = h.mwrite(&index, "c", &sensor_docs(10, Some("e")), None);
    assert_eq!(s, S::KUZZLE_OK, "{r}");
    assert_eq!(h.count(&index, "c"), 10);
}

#[test]
fn rejected_jwt_is_renewed_and_the_request_resent() {
    let (_, user, password, _) = auth_stack();
    let h = connect(&cfg(json!({"username": user, "password": password})));
    let index = fresh_index(&h, "revoked");
    // Revoke the client's own token behind its back.
    h.query_ok(json!({"controller": "auth", "action": "logout"}));
    let (s, r) = h.mwrite(&index, "c", &sensor_docs(10, Some("r")), None);
    assert_eq!(s, S::KUZZLE_OK, "{r}");
    assert_eq!(h.count(&index, "c"), 10);
}

#[test]
fn secrets_never_appear_in_errors_or_results() {
    let (stack, user, password, key) = auth_stack();
    let secret = "S3cr3t-Never-Shown-9f7c";
    let mut seen = Vec::new();
    for config in [
        json!({"username": user, "password": secret}),
        json!({"apiKey": secret}),
        json!({"jwt": secret}),
        json!({"host":"127.0.0.1","port":1,"username":user,"password":secret}),
        json!({"username": user, "password": secret, "port": "7522"}),
        json!({"password": secret}),
        json!({"apiKey": secret, "jwt": secret}),
        json!({"apiKey": secret, "bogusKey": 1}),
    ] {
        let mut c = stack.config();
        c.as_object_mut()
            .unwrap()
            .extend(config.as_object().unwrap().clone());
        let (_, e) = try_connect(&c).err().expect("must fail");
        seen.push(e.to_string());
    }
    // A write that fails while using an API key: its result holds no key.
    let admin = connect(&cfg(json!({"username": user, "password": password})));
    let index = fresh_index(&admin, "secrets");
    let h = connect(&cfg(json!({"apiKey": key})));
    let (_, r) = h.mwrite(&index, "nosuchcollection", &sensor_docs(2, Some("k")), None);
    seen.push(r.to_string());
    // The settings a client reports name its credentials, never give them.
    let info = h.info();
    assert_eq!(info["auth"], "token", "{info}");
    seen.push(info.to_string());
    let info = admin.info();
    assert_eq!(
        (&info["auth"], &info["username"]),
        (&json!("local"), &json!(user))
    );
    seen.push(info.to_string());
    for text in &seen {
        assert!(!text.contains(secret), "secret leaked: {text}");
        assert!(!text.contains(key.as_str()), "API key leaked: {text}");
        assert!(!text.contains(password.as_str()), "password leaked: {text}");
    }
}
