//! kuzzle_mwrite through the C ABI, against the real local Kuzzle stack.

mod common;

use common::*;
use kuzzle::kuzzle_status as S;
use serde_json::{json, Value};
use std::collections::HashSet;

#[test]
fn happy_path_reports_every_document() {
    let stack = default_stack();
    let h = connect(&stack.config());
    let index = fresh_index(&h, "happy");
    let docs = json!([
        {"_id": "a", "body": {"temp": 21.5, "name": "é \"quoted\""}},
        {"_id": "b", "body": {"temp": 22}},
        {"body": {"temp": 23, "nested": {"deep": [1, 2, {"x": null}]}}}
    ]);
    let (status, r) = h.mwrite(&index, "c", &docs, None);
    assert_eq!(status, S::KUZZLE_OK, "{r}");
    assert_eq!(arr_len(&r, "successes"), 3);
    assert_eq!(arr_len(&r, "errors"), 0);
    assert!(r.get("error").is_none());
    let s = &r["successes"];
    assert_eq!(s[0]["_id"], "a");
    assert_eq!(s[0]["_version"], 1);
    assert_eq!(s[0]["created"], true);
    assert_eq!(s[0]["_source"], docs[0]["body"]);
    assert_eq!(s[2]["_source"], docs[2]["body"]);
    assert!(s[2]["_id"].as_str().is_some_and(|id| !id.is_empty()));

    // Written again: replaced, version 2, created false.
    let (status, r) = h.mwrite(
        &index,
        "c",
        &json!([{"_id": "a", "body": {"temp": 1}}]),
        None,
    );
    assert_eq!(status, S::KUZZLE_OK, "{r}");
    assert_eq!(r["successes"][0]["_version"], 2);
    assert_eq!(r["successes"][0]["created"], false);

    // Really stored: count and get.
    assert_eq!(h.count(&index, "c"), 3);
    let got = h.query_ok(
        json!({"controller":"document","action":"get","index":index,"collection":"c","_id":"b"}),
    );
    assert_eq!(got["_source"]["temp"], 22);
}

#[test]
fn zero_documents() {
    let h = connect(&default_stack().config());
    let index = fresh_index(&h, "zero");
    let (status, r) = h.mwrite(&index, "c", &json!([]), None);
    assert_eq!(status, S::KUZZLE_OK);
    assert_eq!(r, json!({"successes": [], "errors": []}));
}

#[test]
fn invalid_documents_are_rejected_alone() {
    let h = connect(&default_stack().config());
    let index = fresh_index(&h, "mixed");
    let long_id = "x".repeat(600);
    let docs = format!(
        r#"[
        {{"_id": "ok1", "body": {{"v": 1}}}},
        {{"_id": "nobody"}},
        {{"_id": "notobj", "body": [1, 2]}},
        {{"_id": 42, "body": {{"v": 2}}}},
        {{"_id": "typo", "Body": {{"v": 3}}}},
        "just a string",
        {{"_id": "{long_id}", "body": {{"v": 4}}}},
        {{"body": {{"v": 5}}}}
    ]"#
    );
    let (status, r) = h.mwrite_raw(&index, "c", &docs, None);
    assert_eq!(status, S::KUZZLE_PARTIAL, "{r:.500}");
    assert_eq!(arr_len(&r, "successes"), 2);
    assert_eq!(arr_len(&r, "errors"), 6);
    for e in r["errors"].as_array().unwrap() {
        assert_eq!(e["status"], 400, "{e:.200}");
        assert!(e["reason"].as_str().unwrap().len() > 5);
    }
    let reasons: Vec<&str> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("body must be an object")));
    assert!(reasons.iter().any(|r| r.contains("_id must be a string")));
    assert!(reasons.iter().any(|r| r.contains("Body")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("512 bytes")));
    // The rejected documents come back in their input form.
    assert!(r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["document"] == "just a string"));
    assert_eq!(h.count(&index, "c"), 2);
}

#[test]
fn twenty_thousand_documents_are_chunked_and_all_stored() {
    let h = connect(&json!({"host": "127.0.0.1", "port": default_stack().port,
        "maxRequestBytes": 32768, "concurrency": 4}));
    let index = fresh_index(&h, "big");
    let docs = sensor_docs(20_000, None);
    let (status, r) = h.mwrite(&index, "c", &docs, None);
    assert_eq!(status, S::KUZZLE_OK, "{:.500}", r.to_string());
    assert_eq!(arr_len(&r, "successes"), 20_000);
    let ids: HashSet<&str> = r["successes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 20_000, "ids are unique");
    // Input order is kept across the merged requests.
    for (i, s) in r["successes"].as_array().unwrap().iter().enumerate() {
        assert_eq!(s["_source"]["seq"], i, "order broken at {i}");
    }
    assert_eq!(h.count(&index, "c"), 20_000);
}

#[test]
fn gzip_on_and_off_both_store() {
    let port = default_stack().port;
    for compression in ["gzip", "none"] {
        let h = connect(
            &json!({"host":"127.0.0.1","port":port,"compression":compression,"maxRequestBytes":65536}),
        );
        let index = fresh_index(&h, compression);
        let (status, r) = h.mwrite(&index, "c", &sensor_docs(3_000, Some("g")), None);
        assert_eq!(
            status,
            S::KUZZLE_OK,
            "{compression}: {:.300}",
            r.to_string()
        );
        assert_eq!(arr_len(&r, "successes"), 3_000);
        assert_eq!(h.count(&index, "c"), 3_000, "{compression}");
    }
}

/// What goes on the wire, counted by a proxy: gzip'd requests with
/// "gzip", plain ones with "none"; "auto" towards a loopback address
/// compresses only when Kuzzle answers slowly, as a distant one behind a
/// local tunnel does (30 ms before each connection's first byte here), and
/// then sends 8 requests at once instead of 4; kuzzle_client_info says so.
#[test]
fn document_larger_than_a_request_is_rejected_alone() {
    let port = default_stack().port;
    let h = connect(
        &json!({"host":"127.0.0.1","port":port,"compression":"none","maxRequestBytes":4096}),
    );
    let index = fresh_index(&h, "huge");
    let docs = json!([
        {"_id":"small1","body":{"v":1}},
        {"_id":"big","body":{"blob":"z".repeat(10_000)}},
        {"_id":"small2","body":{"v":2}}
    ]);
    let (status, r) = h.mwrite(&index, "c", &docs, None);
    assert_eq!(status, S::KUZZLE_PARTIAL, "{r:.300}");
    assert_eq!(arr_len(&r, "successes"), 2);
    assert_eq!(r["errors"][0]["status"], 413);
    assert_eq!(r["errors"][0]["document"]["_id"], "big");
}

#[test]
fn wait_for_refresh_makes_documents_searchable_at_once() {
    let h = connect(&default_stack().config());
    let index = fresh_index(&h, "refresh");
    let (status, r) = h.mwrite(
        &index,
        "c",
        &sensor_docs(50, Some("r")),
        Some(json!({"waitForRefresh": true})),
    );
    assert_eq!(status, S::KUZZLE_OK, "{r}");
    let found = h.query_ok(
        json!({"controller":"document","action":"search","index":index,"collection":"c",
        "body":{"query":{"match_all":{}}},"size":100}),
    );
    assert_eq!(found["total"], 50);
}

#[test]
fn strict_with_one_bad_document_reports_the_good_ones_as_stored() {
    let h = connect(&default_stack().config());
    let index = format!("t-strict-{}", std::process::id());
    h.query_ok(json!({"controller":"index","action":"create","index":index}));
    h.query_ok(
        json!({"controller":"collection","action":"create","index":index,"collection":"c",
        "body":{"mappings":{"dynamic":"strict","properties":{"temp":{"type":"float"}}}}}),
    );
    let docs = json!([
        {"_id":"good1","body":{"temp":1.5}},
        {"_id":"bad","body":{"unmapped":"field"}},
        {"_id":"good2","body":{"temp":2.5}}
    ]);
    let (status, r) = h.mwrite(&index, "c", &docs, Some(json!({"strict": true})));
    assert_eq!(status, S::KUZZLE_PARTIAL, "{r}");
    assert_eq!(arr_len(&r, "errors"), 1, "{r}");
    assert_eq!(r["errors"][0]["document"]["_id"], "bad");
    assert_eq!(arr_len(&r, "successes"), 2);
    assert_eq!(r["successes"][0]["_id"], "good1");
    assert_eq!(r["successes"][0]["_version"], Value::Null);
    assert_eq!(r["successes"][1]["_source"]["temp"], 2.5);
    assert_eq!(r["errors"][0]["inDoubt"], false, "{r}");
    assert_eq!(h.count(&index, "c"), 2, "Kuzzle stored the good ones");

    // Without any id (generateIds off): Kuzzle 2.56 lists the rejected one as
    // {"_source": ...}; matched by its body, the others reported stored.
    let h2 = connect(&json!({"host":"127.0.0.1","port":default_stack().port,"generateIds":false}));
    let docs = json!([
        {"body":{"temp":3.5}},
        {"body":{"unmapped":"again"}},
        {"body":{"temp":4.5}}
    ]);
    let (status, r) = h2.mwrite(&index, "c", &docs, Some(json!({"strict": true})));
    assert_eq!(status, S::KUZZLE_PARTIAL, "{r}");
    assert_eq!(arr_len(&r, "errors"), 1, "{r}");
    assert_eq!(r["errors"][0]["status"], 400, "{r}");
    assert_eq!(r["errors"][0]["inDoubt"], false, "{r}");
    assert_eq!(
        r["errors"][0]["document"]["_source"]["unmapped"], "again",
        "{r}"
    );
    assert_eq!(arr_len(&r, "successes"), 2, "{r}");
    assert_eq!(r["successes"][0]["_source"]["temp"], 3.5);
    assert_eq!(r["successes"][1]["_source"]["temp"], 4.5);
    assert_eq!(h.count(&index, "c"), 4, "Kuzzle stored 2 more");
}

#[test]
fn missing_index_fails_every_document_with_the_server_error() {
    let h = connect(&default_stack().config());
    let (status, r) = h.mwrite(
        "t-no-such-index-anywhere",
        "c",
        &sensor_docs(10, Some("m")),
        None,
    );
    assert_eq!(status, S::KUZZLE_ERR_SERVER, "{r}");
    assert_eq!(arr_len(&r, "errors"), 10);
    assert_eq!(arr_len(&r, "successes"), 0);
    assert_eq!(r["error"]["status"], 412, "{r}");
    assert_eq!(r["error"]["id"], "services.storage.unknown_index");
    assert_eq!(r["error"]["inDoubt"], false, "Kuzzle's verdict: {r}");
    assert_eq!(r["errors"][3]["status"], 412);
    assert_eq!(r["errors"][3]["inDoubt"], false);
}

#[test]
fn generated_ids_are_short_unique_and_reported() {
    let h = connect(&default_stack().config());
    let index = fresh_index(&h, "genid");
    let (status, r) = h.mwrite(&index, "c", &sensor_docs(100, None), None);
    assert_eq!(status, S::KUZZLE_OK);
    let ids: HashSet<String> = r["successes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 100);
    assert!(ids.iter().all(|id| id.len() <= 16), "{ids:?}");
    // generateIds off: Kuzzle makes the ids.
    let h2 = connect(&json!({"host":"127.0.0.1","port":default_stack().port,"generateIds":false}));
    let (status, r) = h2.mwrite(&index, "c", &sensor_docs(10, None), None);
    assert_eq!(status, S::KUZZLE_OK);
    assert_eq!(arr_len(&r, "successes"), 10);
    assert_eq!(h.count(&index, "c"), 110);
}

#[test]
fn server_gone_reports_every_document_with_status_0() {
    let stack = default_stack();
    let proxy = Proxy::start(stack.port);
    let h = connect(&json!({"host":"127.0.0.1","port":proxy.port,"retries":1,"retryBackoffMs":10}));
    let index = fresh_index(&h, "gone");
    proxy.cut();
    let (status, r) = h.mwrite(&index, "c", &sensor_docs(25, Some("x")), None);
    assert_eq!(status, S::KUZZLE_ERR_CONNECTION, "{r}");
    assert_eq!(arr_len(&r, "successes"), 0);
    assert_eq!(arr_len(&r, "errors"), 25);
    assert_eq!(r["errors"][0]["status"], 0);
    assert_eq!(r["error"]["status"], 0);
    assert_eq!(r["error"]["id"], "libkuzzle.connection");
    // Refused: never sent, so certainly not written.
    assert_eq!(r["error"]["inDoubt"], false, "{r}");
    assert_eq!(r["errors"][0]["inDoubt"], false, "{r}");
}

#[test]
fn deeply_nested_document_is_rejected_alone() {
    let h = connect(&default_stack().config());
    let index = fresh_index(&h, "deep");
    // 20,000 levels make Kuzzle fail a whole request; 10,000 here, and the
    // whole input nested 10,000 levels deep must not crash anything either.
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let docs =
        format!(r#"[{{"_id":"ok","body":{{"v":1}}}},{{"_id":"deep","body":{{"d":{deep}}}}}]"#);
    let (status, text) = h.mwrite_text(&index, "c", &docs, None);
    assert_eq!(status, S::KUZZLE_PARTIAL, "{text:.300}");
    assert!(
        text.starts_with(r#"{"successes":[{"_id":"ok","#),
        "{text:.300}"
    );
    assert!(text.contains("nested deeper than 512 levels"));
    assert_eq!(text.matches(r#""status":400"#).count(), 1);
    assert_eq!(h.count(&index, "c"), 1);

    let (status, text) = h.mwrite_text(&index, "c", &format!("[{deep}]"), None);
    assert_eq!(status, S::KUZZLE_PARTIAL, "{text:.300}");
    assert!(text.contains("a document must be an object"));
}

#[test]
fn notify_reaches_a_websocket_subscriber() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let stack = default_stack();
    let h = connect(&stack.config());
    let index = fresh_index(&h, "notify");
    let mut child = Command::new("node")
        .arg(repo().join("tests/support/subscribe.js"))
        .args([&stack.port.to_string(), &index, "c", "5", "15000"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is needed for the WebSocket subscriber");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "subscriber did not start");

    // Without notify, nobody hears; with it, the subscriber gets all five.
    let (s, _) = h.mwrite(&index, "c", &sensor_docs(3, Some("quiet")), None);
    assert_eq!(s, S::KUZZLE_OK);
    let (s, r) = h.mwrite(
        &index,
        "c",
        &sensor_docs(5, Some("loud")),
        Some(json!({"notify": true})),
    );
    assert_eq!(s, S::KUZZLE_OK, "{r}");
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(child.wait().unwrap().success());
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("notifications"));
    assert_eq!(words.next(), Some("5"), "{line}");
    let ids: Vec<&str> = words.next().unwrap_or("").split(',').collect();
    assert!(ids.iter().all(|id| id.starts_with("loud")), "{line}");
}

#[test]
fn source_false_leaves_bodies_out_of_successes_but_stores_them() {
    let stack = default_stack();
    let h = connect(&stack.config());
    let index = fresh_index(&h, "nosource");
    let mut docs = sensor_docs(2_000, Some("n"));
    docs.as_array_mut()
        .unwrap()
        .push(json!({"_id": "bad", "body": [1]}));
    let (status, r) = h.mwrite(&index, "c", &docs, Some(json!({"source": false})));
    assert_eq!(status, S::KUZZLE_PARTIAL, "{:.300}", r.to_string());
    assert_eq!(arr_len(&r, "successes"), 2_000);
    assert_eq!(arr_len(&r, "errors"), 1);
    let first = &r["successes"][0];
    assert_eq!(
        first.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["_id", "_version", "created"]
    );
    assert_eq!(first["_id"], docs[0]["_id"]);
    assert_eq!(first["_version"], 1);
    // Rejections still show the document as given.
    assert_eq!(r["errors"][0]["document"]["_id"], "bad");
    assert_eq!(h.count(&index, "c"), 2_000);
    let got = h.query_ok(json!({"controller":"document","action":"get","index":index,
        "collection":"c","_id":docs[1]["_id"]}));
    assert_eq!(got["_source"], docs[1]["body"]);
}

/// A host name (looked up, then kept a minute) works like an address,
/// request after request.
#[test]
fn host_name_is_resolved_and_kept() {
    let stack = default_stack();
    let h = connect(&json!({"host": "localhost", "port": stack.port,
                             "maxDocumentsPerRequest": 5, "concurrency": 2}));
    let index = fresh_index(&h, "names");
    let docs: Vec<Value> = (0..50)
        .map(|i| json!({"_id": format!("n{i}"), "body": {"i": i}}))
        .collect();
    // 10 requests: the first looks the name up, the others reuse it.
    let (status, r) = h.mwrite(&index, "c", &Value::Array(docs), None);
    assert_eq!(status, S::KUZZLE_OK, "{r}");
    assert_eq!(arr_len(&r, "successes"), 50);
}

#[test]
fn ids_that_are_not_unicode_are_refused_alone_at_the_door() {
    // Kuzzle would store both lone surrogates as U+FFFD: the second would
    // overwrite the first, each reported a success under another id.
    let h = connect(&default_stack().config());
    let index = fresh_index(&h, "surrogate");
    let docs = r#"[{"_id":"\ud800","body":{"v":1}},{"_id":"\udbff","body":{"v":2}},{"_id":"\ud83d\ude00","body":{"v":3}}]"#;
    let (status, text) = h.mwrite_text(&index, "c", docs, Some(r#"{"waitForRefresh":true}"#));
    assert_eq!(status, S::KUZZLE_PARTIAL, "{text}");
    // The rejected items come back in their input form, which a strict
    // decoder refuses (the grammar allows it): read the result's text.
    assert!(serde_json::from_str::<&serde_json::value::RawValue>(&text).is_ok());
    assert_eq!(text.matches("lone surrogate").count(), 2, "{text}");
    assert_eq!(text.matches(r#""status":400"#).count(), 2, "{text}");
    assert_eq!(text.matches(r#""inDoubt":false"#).count(), 2, "{text}");
    let successes = &text[..text.find(r#""errors""#).unwrap()];
    assert!(
        successes.contains(r#""v":3"#) && !successes.contains(r#""v":1"#),
        "{text}"
    );
    assert_eq!(h.count(&index, "c"), 1);
}

#[test]
fn lazy_connect_gives_a_handle_with_kuzzle_out_of_reach_and_connects_on_first_use() {
    // A port nothing listens on: the uplink is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = connect(&json!({"host":"127.0.0.1","port":port,"lazyConnect":true,
        "retries":0,"username":"u","password":"p"}));
    let info = h.info();
    assert_eq!(info["connected"], false, "{info}");
    assert_eq!(
        info["compression"],
        Value::Null,
        "auto, not settled: {info}"
    );
    let (status, r) = h.mwrite("i", "c", &sensor_docs(5, Some("lz")), None);
    assert_eq!(status, S::KUZZLE_ERR_CONNECTION, "{r}");
    assert_eq!(arr_len(&r, "errors"), 5, "{r}");
    for e in r["errors"].as_array().unwrap() {
        assert_eq!(
            (e["status"].as_u64(), e["inDoubt"].as_bool()),
            (Some(0), Some(false)),
            "{e}"
        );
    }
    // Kuzzle reachable: the first use connects and settles "auto".
    let stack = default_stack();
    let h = connect(&json!({"host":"127.0.0.1","port":stack.port,"lazyConnect":true}));
    assert_eq!(h.info()["connected"], false);
    let index = fresh_index(&h, "lazy");
    let info = h.info();
    assert_eq!(info["connected"], true, "{info}");
    assert!(info["compression"].is_string(), "{info}");
    let (status, r) = h.mwrite(&index, "c", &sensor_docs(5, Some("lz")), None);
    assert_eq!(status, S::KUZZLE_OK, "{r}");
}
