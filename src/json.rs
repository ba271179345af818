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
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            b: text.as_bytes(),
            pos: 0,
            closers: Vec::new(),
        }
    }

    fn err<T>(&self, expected: &'static str) -> Parsed<T> {
        Err(SyntaxError {
            at: self.pos,
            expected,
        })
    }

    /// The text between two positions (both on character boundaries: they
    /// sit on ASCII structural bytes).
    pub fn slice(&self, from: usize, to: usize) -> &'a str {
        &self.text[from..to]
    }

    #[inline]
    pub fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.pos) {
            self.pos += 1;
        }
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

    /// A string starting at the current byte (a quote); returns its text with
    /// the quotes.
    #[inline]
    pub fn string(&mut self) -> Parsed<&'a str> {
        let start = self.pos;
        if self.b.get(self.pos) != Some(&b'"') {
            return self.err("a string");
        }
        self.pos += 1;
        loop {
            self.plain_run();
            match self.b.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(self.slice(start, self.pos));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.b.get(self.pos) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            for _ in 0..4 {
                                match self.b.get(self.pos) {
                                    Some(h) if h.is_ascii_hexdigit() => self.pos += 1,
                                    _ => return self.err("4 hex digits after \\u"),
                                }
                            }
                        }
                        _ => return self.err("an escape sequence"),
                    }
                }
                Some(_) => return self.err("an escaped control character"),
                None => return self.err("a closing quote"),
            }
        }
    }

    /// Moves past the bytes a string holds as they are: eight at a time
    /// while none is special (most strings here are short keys and ids).
    #[inline]
    fn plain_run(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // Flags a zero byte (exact for the lowest one, which is all we use).
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        while let Some(chunk) = self.b.get(self.pos..self.pos + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            let special = zero(w ^ (ONES * b'"' as u64))
                | zero(w ^ (ONES * b'\\' as u64))
                | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
            if special != 0 {
                self.pos += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        while self.pos < self.b.len() && PLAIN[self.b[self.pos] as usize] {
            self.pos += 1;
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.pos < self.b.len() && self.b[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Parsed<()> {
        if self.b.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.b.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.err("a digit"),
        }
        if self.b.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return self.err("a digit after the decimal point");
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.b.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return self.err("a digit in the exponent");
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static str) -> Parsed<()> {
        if self.b[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            self.err("a value")
        }
    }

    /// `"key":` inside an object, leaving the scanner before the value.
    #[inline]
    pub fn key(&mut self) -> Parsed<&'a str> {
        self.ws();
        let key = self.string()?;
        self.eat(b':', "':'")?;
        self.ws();
        Ok(key)
    }

    /// One complete value (after whitespace); returns its nesting depth:
    /// 0 for a scalar, 1 for `{}` or `[1]`, and so on.
    pub fn value(&mut self) -> Parsed<usize> {
        let (mut depth, mut max) = (0usize, 0usize);
        self.closers.clear();
        loop {
            // A value is expected here.
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    self.pos += 1;
                    max = max.max(depth + 1);
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                    } else {
                        self.closers.push(close);
                        depth += 1;
                        if open == b'{' {
                            self.key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal("true")?,
                Some(b'f') => self.literal("false")?,
                Some(b'n') => self.literal("null")?,
                _ => return self.err("a value"),
            }
            // After a value: close what ends here, then the next one.
            loop {
                let Some(&close) = self.closers.last() else {
                    return Ok(max);
                };
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if close == b'}' {
                            self.key()?;
                        }
                        break;
                    }
                    Some(c) if c == close => {
                        self.pos += 1;
                        self.closers.pop();
                        depth -= 1;
                    }
                    _ if close == b'}' => return self.err("',' or '}'"),
                    _ => return self.err("',' or ']'"),
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
