//! The C boundary itself: NULL and non-UTF-8 arguments, bad configuration,
//! status strings, version, and the committed header.

mod common;

use common::*;
use kuzzle::ffi::*;
use kuzzle::kuzzle_status as S;
use serde_json::{json, Value};
use std::ffi::{c_char, CStr};
use std::net::TcpListener;
use std::ptr;

fn error_of(json: &str) -> Value {
    let v: Value = serde_json::from_str(json).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(
        v["error"]["id"].as_str().is_some_and(|m| m.contains('.')),
        "{v}"
    );
    v
}

#[test]
fn connect_rejects_null_and_bad_config() {
    let mut client = ptr::null_mut();
    let mut err = ptr::null_mut();
    // NULL config.
    let s = unsafe { kuzzle_connect(ptr::null(), &mut client, &mut err) };
    assert_eq!(s, S::KUZZLE_ERR_INVALID_ARGUMENT);
    assert!(client.is_null());
    assert!(error_of(&take(err))["error"]["message"]
        .as_str()
        .unwrap()
        .contains("config_json"));
    // NULL out_client, NULL out_error: still a status, no crash.
    let cfg = cstr("{}");
    let s = unsafe { kuzzle_connect(cfg.as_ptr(), ptr::null_mut(), ptr::null_mut()) };
    assert_eq!(s, S::KUZZLE_ERR_INVALID_ARGUMENT);
    // Non-UTF-8 bytes.
    let bad = b"{\"host\":\"\xff\xfe\"}\0";
    let s = unsafe { kuzzle_connect(bad.as_ptr().cast(), &mut client, &mut err) };
    assert_eq!(s, S::KUZZLE_ERR_INVALID_ARGUMENT);
    assert!(take(err).contains("UTF-8"));
    // Unknown key, named in the message.
    let (s, e) = try_connect(&json!({"hots": "localhost"})).err().unwrap();
    assert_eq!(s, S::KUZZLE_ERR_INVALID_ARGUMENT);
    assert!(e["error"]["message"].as_str().unwrap().contains("hots"));
    // Wrong type.
    let (s, e) = try_connect(&json!({"port": "7512"})).err().unwrap();
    assert_eq!(s, S::KUZZLE_ERR_INVALID_ARGUMENT);
    assert!(e["error"]["message"].as_str().unwrap().contains("port"));
    // Not JSON.
    let cfg = cstr("{host:");
    let s = unsafe { kuzzle_connect(cfg.as_ptr(), &mut client, &mut err) };
    assert_eq!(s, S::KUZZLE_ERR_JSON);
    error_of(&take(err));
}

#[test]
fn connect_to_nothing_is_a_connection_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (s, e) = try_connect(&json!({"host":"127.0.0.1","port":port}))
        .err()
        .unwrap();
    assert_eq!(s, S::KUZZLE_ERR_CONNECTION, "{e}");
    assert_eq!(e["error"]["status"], 0);
}

#[test]
fn mwrite_and_query_reject_null_and_non_utf8() {
    let h = connect(&default_stack().config());
    let (i, c, d) = (cstr("idx"), cstr("c"), cstr("[]"));
    let mut out: *mut c_char = ptr::null_mut();
    unsafe {
        // NULL out pointer: nothing to report into, nothing done.
        assert_eq!(
            kuzzle_mwrite(
                h.0,
                i.as_ptr(),
                c.as_ptr(),
                d.as_ptr(),
                ptr::null(),
                ptr::null_mut()
            ),
            S::KUZZLE_ERR_INVALID_ARGUMENT
        );
        for (client, index, coll, docs, name) in [
            (
                ptr::null_mut(),
                i.as_ptr(),
                c.as_ptr(),
                d.as_ptr(),
                "client",
            ),
            (h.0, ptr::null(), c.as_ptr(), d.as_ptr(), "index"),
            (h.0, i.as_ptr(), ptr::null(), d.as_ptr(), "collection"),
            (h.0, i.as_ptr(), c.as_ptr(), ptr::null(), "documents_json"),
        ] {
            let s = kuzzle_mwrite(client, index, coll, docs, ptr::null(), &mut out);
            assert_eq!(s, S::KUZZLE_ERR_INVALID_ARGUMENT, "{name}");
            assert!(take(out).contains(name), "{name}");
        }
        let bad = b"[{\"body\":{\"v\":\"\xc3\x28\"}}]\0";
        let s = kuzzle_mwrite(
            h.0,
            i.as_ptr(),
            c.as_ptr(),
            bad.as_ptr().cast(),
            ptr::null(),
            &mut out,
        );
        assert_eq!(s, S::KUZZLE_ERR_INVALID_ARGUMENT);
        assert!(take(out).contains("UTF-8"));

        assert_eq!(
            kuzzle_query(h.0, ptr::null(), &mut out),
            S::KUZZLE_ERR_INVALID_ARGUMENT
        );
        error_of(&take(out));
        assert_eq!(
            kuzzle_query(ptr::null_mut(), d.as_ptr(), &mut out),
            S::KUZZLE_ERR_INVALID_ARGUMENT
        );
        error_of(&take(out));
        assert_eq!(
            kuzzle_query(h.0, d.as_ptr(), ptr::null_mut()),
            S::KUZZLE_ERR_INVALID_ARGUMENT
        );

        assert_eq!(
            kuzzle_client_info(ptr::null_mut(), &mut out),
            S::KUZZLE_ERR_INVALID_ARGUMENT
        );
        error_of(&take(out));
        assert_eq!(
            kuzzle_client_info(h.0, ptr::null_mut()),
            S::KUZZLE_ERR_INVALID_ARGUMENT
        );

        // NULL is a no-op for the release functions.
        kuzzle_free_result(ptr::null_mut());
        kuzzle_disconnect(ptr::null_mut());
    }
}

#[test]
fn mwrite_rejects_bad_json_shapes_and_options() {
    let h = connect(&default_stack().config());
    for (docs, what) in [
        ("not json", "garbage"),
        (r#"{"body":{}}"#, "object instead of array"),
        ("[1,2", "truncated"),
        ("", "empty"),
    ] {
        let (s, r) = h.mwrite_raw("idx", "c", docs, None);
        assert_eq!(s, S::KUZZLE_ERR_JSON, "{what}: {r}");
        assert!(
            r.get("successes").is_none() && r["error"]["id"] == "libkuzzle.invalid_json",
            "{what}"
        );
    }
    let (s, r) = h.mwrite_raw("idx", "c", "[]", Some(r#"{"refresh":"wait_for"}"#));
    assert_eq!(s, S::KUZZLE_ERR_INVALID_ARGUMENT);
    assert!(r["error"]["message"].as_str().unwrap().contains("refresh"));
    let (s, _) = h.mwrite_raw("idx", "c", "[]", Some("[]"));
    assert_eq!(s, S::KUZZLE_ERR_JSON);
    let (s, r) = h.mwrite_raw("", "c", "[]", None);
    assert_eq!(s, S::KUZZLE_ERR_INVALID_ARGUMENT, "{r}");
}

#[test]
fn query_returns_result_or_error() {
    let h = connect(&default_stack().config());
    let info = h.query_ok(json!({"controller":"server","action":"info"}));
    assert!(info["serverInfo"]["kuzzle"]["version"]
        .as_str()
        .unwrap()
        .starts_with("2.56."));
    let (s, r) = h.query(json!({"controller":"document","action":"get","index":"nope-nope","collection":"c","_id":"x"}));
    assert_eq!(s, S::KUZZLE_ERR_SERVER);
    assert_eq!(r["error"]["status"], 412, "{r}");
    assert_eq!(r["error"]["id"], "services.storage.unknown_index");
    let (s, r) = h.query(json!({"controller":"nosuch","action":"thing"}));
    assert_eq!(s, S::KUZZLE_ERR_SERVER, "{r}");
    let (s, _) = h.query(json!({"action":"info"}));
    assert_eq!(s, S::KUZZLE_ERR_JSON);
    let (s, _) = h.query(json!([1]));
    assert_eq!(s, S::KUZZLE_ERR_JSON);
    // An action with no result answers null.
    let index = format!("t-noresult-{}", std::process::id());
    let r = h.query_ok(json!({"controller":"index","action":"create","index":index}));
    assert!(r.is_null() || r.is_object(), "{r}");
}

#[test]
fn status_strings_cover_every_code_and_unknown_values() {
    for code in 0..=12 {
        let s = unsafe { CStr::from_ptr(kuzzle_status_str(code)) }
            .to_str()
            .unwrap();
        assert!(!s.is_empty() && s != "unknown status", "{code}");
    }
    for code in [13, -1, i32::MAX, i32::MIN] {
        let s = unsafe { CStr::from_ptr(kuzzle_status_str(code)) }
            .to_str()
            .unwrap();
        assert_eq!(s, "unknown status");
    }
}

#[test]
fn version_matches_cargo_toml_and_header() {
    let v = unsafe { CStr::from_ptr(kuzzle_version()) }
        .to_str()
        .unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    let header = std::fs::read_to_string(repo().join("include/kuzzle.h")).unwrap();
    assert!(header.contains(&format!("#define KUZZLE_VERSION \"{v}\"")));
}

#[test]
fn committed_header_is_the_generated_one() {
    // build.rs generates the header into OUT_DIR only; the one in the source
    // tree is a copy that must not lag behind src/ffi.rs and src/error.rs.
    let generated_path = env!("KUZZLE_GENERATED_HEADER");
    let generated = std::fs::read(generated_path).expect("build.rs's generated header");
    let committed = std::fs::read(repo().join("include/kuzzle.h")).expect("include/kuzzle.h");
    if generated != committed {
        let first = String::from_utf8_lossy(&generated)
            .lines()
            .zip(String::from_utf8_lossy(&committed).lines())
            .position(|(g, c)| g != c)
            .map_or("the end of the shorter one".to_string(), |n| {
                format!("line {}", n + 1)
            });
        panic!(
            "include/kuzzle.h is not the header generated from src/ffi.rs and src/error.rs \
             ({generated_path}; they differ from {first}): run `bash scripts/header.sh` and \
             commit include/kuzzle.h"
        );
    }
}
