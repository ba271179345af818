//! Keeps a client's secrets (password, API key, JWT) out of every error
//! text, whatever its source: a server or proxy that echoes a request in
//! its error (a login body, an Authorization header) must not hand them to
//! the caller's logs.

use std::borrow::Cow;

/// `text` with every secret replaced by `***`, as it is and as it reads
/// inside a JSON string (an echoed request body escapes it).
pub(crate) fn scrub<'t>(text: &'t str, secrets: &[String]) -> Cow<'t, str> {
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let escaped = serde_json::to_string(secret).unwrap_or_default();
        for form in [secret.as_str(), escaped.trim_matches('"')] {
            if out.contains(form) {
                out = Cow::Owned(out.replace(form, "***"));
            }
        }
    }
    out
}

/// The same for JSON text: every string in it (keys too) scrubbed, the
/// structure kept. Only parsed when a secret, or its escaped form, is there.
pub(crate) fn scrub_json(json: &mut String, secrets: &[String]) {
    if !in_json(json, secrets) {
        return;
    }
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(json) else {
        return;
    };
    scrub_value(&mut value, secrets);
    *json = value.to_string();
}

/// Whether a secret, or its JSON-escaped form, appears in `json`.
pub(crate) fn in_json(json: &str, secrets: &[String]) -> bool {
    secrets.iter().filter(|s| !s.is_empty()).any(|s| {
        let escaped = serde_json::to_string(s).unwrap_or_default();
        json.contains(s.as_str()) || json.contains(escaped.trim_matches('"'))
    })
}

fn scrub_value(value: &mut serde_json::Value, secrets: &[String]) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Cow::Owned(clean) = scrub(s, secrets) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_value(v, secrets)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                scrub_value(&mut v, secrets);
                map.insert(scrub(&k, secrets).into_owned(), v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_leave_text_and_json_whole() {
        let secrets = vec!["pa\"ss".to_string(), "tok-123".to_string(), String::new()];
        assert_eq!(scrub("bad tok-123 and pa\"ss", &secrets), "bad *** and ***");
        assert!(matches!(scrub("nothing", &secrets), Cow::Borrowed(_)));
        let mut json = serde_json::json!([{
            "reason": "echo: {\"password\":\"pa\\\"ss\"} Bearer tok-123 pa\"ss",
            "inDoubt": true
        }])
        .to_string();
        scrub_json(&mut json, &secrets);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let reason = v[0]["reason"].as_str().unwrap();
        assert!(
            !reason.contains("tok-123") && !reason.contains("pa\"ss"),
            "{reason}"
        );
        assert_eq!(v[0]["inDoubt"], true);
        // "true" as a secret must not break the structure
        let mut json = r#"{"inDoubt":true,"m":"true story"}"#.to_string();
        scrub_json(&mut json, &["true".to_string()]);
        assert_eq!(json, r#"{"inDoubt":true,"m":"*** story"}"#);
    }
}
