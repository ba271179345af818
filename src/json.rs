//! A one-pass validating JSON scanner for the hot paths: the documents a
//! user hands to `kuzzle_mwrite` and the answers Kuzzle sends back. It checks
//! the full grammar (RFC 8259) and hands out slices of the text, so document
//! bodies are copied byte for byte and never re-serialised. Iterative, so
//! deep nesting costs memory, not stack. The text is a `&str`: UTF-8 is
//! already checked.

use std::fmt;

/// Where and why the text is not JSON.
#[derive(Debug, PartialEq)]
pub(crate) struct SyntaxError {
    pub at: usize,
    pub expected: &'static str,
}

impl SyntaxError {
    /// `expected X at line L column C` for people; columns count bytes.
    pub fn describe(&self, text: &str) -> String {
        let before = &text.as_bytes()[..self.at.min(text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        format!("expected {} at line {line} column {column}", self.expected)
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "expected {} at byte {}", self.expected, self.at)
    }
}

pub(crate) type Parsed<T> = std::result::Result<T, SyntaxError>;

/// Bytes that may appear as they are inside a string: everything but the
/// quote, the backslash and control characters.
static PLAIN: [bool; 256] = {
    let mut t = [true; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = false;
        i += 1;
    }
    t[b'"' as usize] = false;
    t[b'\\' as usize] = false;
    t
};

pub(crate) struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    pub pos: usize,
    /// Closing bytes of the containers open in `value`.
    closers: Vec<u8>,
    /// What the hot paths (which return `Option`, cheap to pass around)
    /// expected where they failed; they leave `pos` there.
    expected: &'static str,
    /// A string scanned since `string` last began held an escape.
    escaped: bool,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Flags the zero bytes of `x` (exact for the lowest one: all we use).
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGH
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            b: text.as_bytes(),
            pos: 0,
            closers: Vec::new(),
            expected: "",
            escaped: false,
        }
    }

    fn err<T>(&self, expected: &'static str) -> Parsed<T> {
        Err(SyntaxError {
            at: self.pos,
            expected,
        })
    }

    /// Records a failure of a hot path at `at`.
    #[cold]
    fn fail<T>(&mut self, at: usize, expected: &'static str) -> Option<T> {
        self.pos = at;
        self.expected = expected;
        None
    }

    /// The failure a hot path recorded.
    #[cold]
    fn failed<T>(&self) -> Parsed<T> {
        self.err(self.expected)
    }

    /// The text between two positions (both on character boundaries: they
    /// sit on ASCII structural bytes).
    pub fn slice(&self, from: usize, to: usize) -> &'a str {
        &self.text[from..to]
    }

    #[inline(always)]
    fn skip_ws(&self, mut i: usize) -> usize {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(i) {
            i += 1;
        }
        i
    }

    #[inline]
    pub fn ws(&mut self) {
        self.pos = self.skip_ws(self.pos);
    }

    /// The next byte, after whitespace.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.pos).copied()
    }

    /// Consumes `byte` (after whitespace) or fails.
    #[inline]
    pub fn eat(&mut self, byte: u8, expected: &'static str) -> Parsed<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(expected)
        }
    }

    /// Only whitespace is left.
    pub fn end(&mut self) -> Parsed<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.err("end of input"),
        }
    }

    /// Past the string whose opening quote is at `i`.
    #[inline]
    fn string_end(&mut self, mut i: usize) -> Option<usize> {
        let b = self.b;
        i += 1;
        loop {
            // Eight bytes at a time while none is special: most strings
            // here are short keys and ids, done in one or two steps.
            while let Some(chunk) = b.get(i..i + 8) {
                let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
                let special = zero_bytes(w ^ (ONES * b'"' as u64))
                    | zero_bytes(w ^ (ONES * b'\\' as u64))
                    | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
                if special != 0 {
                    i += (special.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            while i < b.len() && PLAIN[b[i] as usize] {
                i += 1;
            }
            match b.get(i) {
                Some(b'"') => return Some(i + 1),
                Some(b'\\') => match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                        self.escaped = true;
                        i += 2
                    }
                    Some(b'u') => {
                        self.escaped = true;
                        for k in i + 2..i + 6 {
                            match b.get(k) {
                                Some(h) if h.is_ascii_hexdigit() => {}
                                _ => return self.fail(k, "4 hex digits after \\u"),
                            }
                        }
                        i += 6;
                    }
                    _ => return self.fail(i + 1, "an escape sequence"),
                },
                Some(_) => return self.fail(i, "an escaped control character"),
                None => return self.fail(i, "a closing quote"),
            }
        }
    }

    #[inline(always)]
    fn digits(&self, mut i: usize) -> usize {
        while i < self.b.len() && self.b[i].is_ascii_digit() {
            i += 1;
        }
        i
    }

    /// Past the number starting at `i`.
    #[inline]
    fn number_end(&mut self, mut i: usize) -> Option<usize> {
        let b = self.b;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = self.digits(i + 1),
            _ => return self.fail(i, "a digit"),
        }
        if b.get(i) == Some(&b'.') {
            let end = self.digits(i + 1);
            if end == i + 1 {
                return self.fail(end, "a digit after the decimal point");
            }
            i = end;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let end = self.digits(i);
            if end == i {
                return self.fail(end, "a digit in the exponent");
            }
            i = end;
        }
        Some(i)
    }

    /// From `i` (before a key): the key's start and end, and where its
    /// value starts (past `:` and whitespace).
    #[inline(always)]
    fn key_parts(&mut self, i: usize) -> Option<(usize, usize, usize)> {
        let start = self.skip_ws(i);
        if self.b.get(start) != Some(&b'"') {
            return self.fail(start, "a string");
        }
        let end = self.string_end(start)?;
        let colon = self.skip_ws(end);
        if self.b.get(colon) != Some(&b':') {
            return self.fail(colon, "':'");
        }
        Some((start, end, self.skip_ws(colon + 1)))
    }

    #[inline]
    fn key_end(&mut self, i: usize) -> Option<usize> {
        self.key_parts(i).map(|(_, _, value)| value)
    }

    /// `"key":` inside an object, leaving the scanner before the value.
    #[inline]
    pub fn key(&mut self) -> Parsed<&'a str> {
        match self.key_parts(self.pos) {
            Some((start, end, value)) => {
                self.pos = value;
                Ok(self.slice(start, end))
            }
            None => self.failed(),
        }
    }

    /// One complete value (after whitespace); returns its nesting depth:
    /// 0 for a scalar, 1 for `{}` or `[1]`, and so on.
    pub fn value(&mut self) -> Parsed<usize> {
        match self.value_end(self.pos) {
            Some((end, depth)) => {
                self.pos = end;
                Ok(depth)
            }
            None => self.failed(),
        }
    }

    /// Past the value at `i` (after whitespace), and its depth. Iterative:
    /// open containers are kept in `closers`, not on the stack.
    fn value_end(&mut self, mut i: usize) -> Option<(usize, usize)> {
        let b = self.b;
        let (mut depth, mut max) = (0usize, 0usize);
        self.closers.clear();
        loop {
            // A value is expected here.
            i = self.skip_ws(i);
            match b.get(i) {
                Some(&open @ (b'{' | b'[')) => {
                    max = max.max(depth + 1);
                    let close = if open == b'{' { b'}' } else { b']' };
                    let j = self.skip_ws(i + 1);
                    if b.get(j) == Some(&close) {
                        i = j + 1;
                    } else {
                        self.closers.push(close);
                        depth += 1;
                        i = if open == b'{' { self.key_end(j)? } else { j };
                        continue;
                    }
                }
                Some(b'"') => i = self.string_end(i)?,
                Some(b'-' | b'0'..=b'9') => i = self.number_end(i)?,
                Some(b't') if b[i..].starts_with(b"true") => i += 4,
                Some(b'f') if b[i..].starts_with(b"false") => i += 5,
                Some(b'n') if b[i..].starts_with(b"null") => i += 4,
                _ => return self.fail(i, "a value"),
            }
            // After a value: close what ends here, then the next one.
            loop {
                let Some(&close) = self.closers.last() else {
                    return Some((i, max));
                };
                i = self.skip_ws(i);
                match b.get(i) {
                    Some(b',') => {
                        i += 1;
                        if close == b'}' {
                            i = self.key_end(i)?;
                        }
                        break;
                    }
                    Some(&c) if c == close => {
                        i += 1;
                        self.closers.pop();
                        depth -= 1;
                    }
                    _ if close == b'}' => return self.fail(i, "',' or '}'"),
                    _ => return self.fail(i, "',' or ']'"),
                }
            }
        }
    }

    /// The members of the object starting at the current byte (`{`): for
    /// each, `f(key with its quotes, value text, value depth)`.
    pub fn members(
        &mut self,
        mut f: impl FnMut(&'a str, &'a str, usize) -> Parsed<()>,
    ) -> Parsed<()> {
        self.fields(|s, key| {
            let start = s.pos;
            let depth = s.value()?;
            f(key, s.slice(start, s.pos), depth)
        })
    }

    /// The members of the object starting at the current byte (`{`): `f`
    /// gets each key (with its quotes) and must consume its value.
    pub fn fields(&mut self, mut f: impl FnMut(&mut Self, &'a str) -> Parsed<()>) -> Parsed<()> {
        self.eat(b'{', "'{'")?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.key()?;
            f(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.err("',' or '}'"),
            }
        }
    }

    /// The items of the array starting at the current byte (`[`): `f` is
    /// called before each item, and must consume it.
    pub fn items(&mut self, mut f: impl FnMut(&mut Self) -> Parsed<()>) -> Parsed<()> {
        self.eat(b'[', "'['")?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            f(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.err("',' or ']'"),
            }
        }
    }

    /// Moves past `known` if the text continues with exactly it. `known`
    /// must be one complete JSON value validated before (a JSON value is
    /// self-delimiting: equal bytes are that same valid value here too).
    #[inline]
    pub fn skip_known(&mut self, known: &str) -> bool {
        self.exact(known.as_bytes())
    }

    /// Moves past `bytes` if the text continues with exactly them.
    #[inline]
    pub fn exact(&mut self, bytes: &[u8]) -> bool {
        let hit = self.b[self.pos..].starts_with(bytes);
        if hit {
            self.pos += bytes.len();
        }
        hit
    }

    /// The string at the current byte, with its quotes; `None` (the scanner
    /// left where it failed) if there is no valid string there.
    #[inline]
    pub fn string(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if self.b.get(start) != Some(&b'"') {
            return None;
        }
        self.escaped = false;
        let end = self.string_end(start)?;
        self.pos = end;
        Some(self.slice(start, end))
    }

    /// Whether the string last read by `string` held an escape (spares a
    /// search of every id for a backslash).
    pub fn escaped(&self) -> bool {
        self.escaped
    }

    /// The run of ASCII digits at the current byte (maybe empty).
    #[inline]
    pub fn digit_run(&mut self) -> &'a str {
        let start = self.pos;
        self.pos = self.digits(start);
        self.slice(start, self.pos)
    }

    /// Skips one value, returning its text.
    pub fn raw(&mut self) -> Parsed<&'a str> {
        self.ws();
        let start = self.pos;
        self.value()?;
        Ok(self.slice(start, self.pos))
    }
}

/// Whether `text` is one JSON value.
#[cfg(test)]
fn valid(text: &str) -> bool {
    let mut s = Scanner::new(text);
    s.raw().is_ok() && s.end().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects_like_serde_json() {
        let cases = [
            "0",
            "-0",
            "01",
            "-",
            "1.",
            "1.5e",
            "1e+9",
            "-1.25E-3",
            "[]",
            "[1,]",
            "[,1]",
            "{}",
            "{,}",
            r#"{"a":1,}"#,
            r#"{"a" : [1, {"b":null}] , "c":"\u00e9\ud83d"}"#,
            r#"{"a"}"#,
            r#"{1:2}"#,
            r#""\x""#,
            r#""\u12g4""#,
            "\"tab\there\"",
            "\"é😀\"",
            "tru",
            "true ",
            " nulls",
            "[1 2]",
            "[[[]]]]",
            "{\"a\":{\"b\":[}}",
            "\"unterminated",
            "",
            "  ",
        ];
        for case in cases {
            let serde = serde_json::from_str::<&serde_json::value::RawValue>(case).is_ok();
            assert_eq!(valid(case), serde, "{case:?}");
        }
    }

    #[test]
    fn depths_and_members() {
        let depth = |t: &str| Scanner::new(t).value().unwrap();
        assert_eq!(depth("1"), 0);
        assert_eq!(depth("{}"), 1);
        assert_eq!(depth("[[],{\"a\":[1]}]"), 3);
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(depth(&deep), 10_000);

        let text = r#"{"_id":"a\"b", "body" : {"a":[{"b":"[[[{{"}]}, "n":-1.5e3,"z":null}"#;
        let mut got = Vec::new();
        Scanner::new(text)
            .members(|k, v, d| {
                got.push((k, v, d));
                Ok(())
            })
            .unwrap();
        assert_eq!(
            got,
            vec![
                (r#""_id""#, r#""a\"b""#, 0),
                (r#""body""#, r#"{"a":[{"b":"[[[{{"}]}"#, 3),
                (r#""n""#, "-1.5e3", 0),
                (r#""z""#, "null", 0),
            ]
        );
    }

    #[test]
    fn errors_say_where() {
        let text = "[1,\n  2 x]";
        let mut s = Scanner::new(text);
        let e = s.items(|s| s.value().map(drop)).unwrap_err();
        assert_eq!(e.describe(text), "expected ',' or ']' at line 2 column 5");
    }

    /// Random mutations of JSON texts: the scanner agrees with serde_json on
    /// every one (deterministic, no server needed).
    #[test]
    fn differential_against_serde_json() {
        let seeds: &[&[u8]] = &[
            br#"[{"_id":"a","body":{"t":1.5e-3,"s":"x\n\u00e9"}},{"body":{"n":[1,-2,{"d":null}]}}]"#,
            br#"{"a":[true,false,null,"",0,-0.0,{"b":{}}],"c":"\\\/\"","d":[[[]]]}"#,
            // Long strings: the eight-at-a-time path, specials at every offset.
            "{\"a longer key, over 8\":\"abcdefghij\\\"klmnopqrstuvw\\u0041xyz 0123456789\",\"k\":\"é😀0123456789abcdef\\n1234567\\t\"}".as_bytes(),
        ];
        let pieces: &[&[u8]] = &[
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"",
            b",",
            b":",
            b"\\",
            b"-",
            b"0",
            b"1",
            b".",
            b"e",
            b"+",
            b"u",
            b"\\u00",
            b"true",
            b"nul",
            b" ",
            b"\t",
            b"\x01",
            "é".as_bytes(),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut seen = [0; 2];
        for _ in 0..200_000 {
            let mut t = seeds[next(seeds.len())].to_vec();
            for _ in 0..1 + next(3) {
                let at = next(t.len() + 1);
                match next(3) {
                    0 if at < t.len() => {
                        t.remove(at);
                    }
                    1 if at < t.len() => t[at] = pieces[next(pieces.len())][0],
                    _ => {
                        let p = pieces[next(pieces.len())];
                        t.splice(at..at, p.iter().copied());
                    }
                }
            }
            let Ok(text) = std::str::from_utf8(&t) else {
                continue;
            };
            let serde = serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok();
            assert_eq!(valid(text), serde, "{text:?}");
            seen[serde as usize] += 1;
        }
        assert!(seen[0] > 10_000 && seen[1] > 10_000, "{seen:?}");
    }
}
