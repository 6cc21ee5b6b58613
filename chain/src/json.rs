//! The JSON subset our artifacts use: a strict pull parser and a writer.
//!
//! Objects must list their keys in the documented order (docs/FORMAT.md), so
//! a reader walks them with `key("name")` calls and never builds a tree: no
//! allocation on the hot path, and a duplicate, missing, unknown or reordered
//! key is simply malformed. Whitespace between tokens is allowed (so a
//! pretty-printed bundle still reads); numbers are non-negative integers in
//! one spelling; strings are UTF-8 with the standard escapes.

use std::borrow::Cow;

use crate::limits::JSON_DEPTH_MAX;

/// The input is not the expected JSON. Callers map this to a failure reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

pub type Parsed<T> = Result<T, Malformed>;

#[derive(Debug)]
pub struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    /// Whether the current object or array has had an element yet.
    first: bool,
}

impl<'a> Parser<'a> {
    pub fn new(text: &'a str) -> Parser<'a> {
        Parser { text, pos: 0, depth: 0, first: true }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> Parsed<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn eat_literal(&mut self, lit: &str) -> Parsed<()> {
        self.ws();
        if self.text[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// Everything consumed, apart from trailing whitespace.
    pub fn end(&mut self) -> Parsed<()> {
        if self.peek().is_none() && self.depth == 0 { Ok(()) } else { Err(Malformed) }
    }

    pub fn begin_object(&mut self) -> Parsed<()> {
        self.open(b'{')
    }

    pub fn end_object(&mut self) -> Parsed<()> {
        self.close(b'}')
    }

    pub fn begin_array(&mut self) -> Parsed<()> {
        self.open(b'[')
    }

    fn open(&mut self, c: u8) -> Parsed<()> {
        if self.depth == JSON_DEPTH_MAX {
            return Err(Malformed);
        }
        self.eat(c)?;
        self.depth += 1;
        self.first = true;
        Ok(())
    }

    fn close(&mut self, c: u8) -> Parsed<()> {
        self.eat(c)?;
        self.depth -= 1;
        self.first = false;
        Ok(())
    }

    fn comma(&mut self) -> Parsed<()> {
        if self.first {
            self.first = false;
            Ok(())
        } else {
            self.eat(b',')
        }
    }

    /// Expects the next member to be `name` and positions at its value.
    ///
    /// Inlined so that, with `name` a literal as at every call site, the fast
    /// path compares the compact spelling `,"name":` (no `,` first in an
    /// object) in place with a few word loads instead of a `memcmp` call.
    /// Anything else, whitespace included, takes [`Parser::key_general`].
    #[inline(always)]
    pub fn key(&mut self, name: &str) -> Parsed<()> {
        let b = self.bytes();
        let at = self.pos + usize::from(!self.first);
        let end = at + name.len() + 3;
        if (self.first || b.get(self.pos) == Some(&b','))
            && b.get(at..end).is_some_and(|token| {
                let (quote, rest) = token.split_at(1);
                let (key, close) = rest.split_at(name.len());
                quote == b"\"" && key == name.as_bytes() && close == b"\":"
            })
        {
            self.pos = end;
            self.first = false;
            return Ok(());
        }
        self.key_general(name)
    }

    /// [`Parser::key`] for any spelling.
    fn key_general(&mut self, name: &str) -> Parsed<()> {
        self.comma()?;
        self.eat(b'"')?;
        if !self.text[self.pos..].starts_with(name) {
            return Err(Malformed);
        }
        self.pos += name.len();
        // The key must end here; a key with an escape is never one of ours.
        if self.bytes().get(self.pos) != Some(&b'"') {
            return Err(Malformed);
        }
        self.pos += 1;
        self.eat(b':')
    }

    /// If the next member is `name`, consumes its key and returns true.
    pub fn optional_key(&mut self, name: &str) -> Parsed<bool> {
        if self.peek() == Some(b'}') {
            return Ok(false);
        }
        let saved = (self.pos, self.first);
        match self.key(name) {
            Ok(()) => Ok(true),
            Err(Malformed) => {
                (self.pos, self.first) = saved;
                Ok(false)
            }
        }
    }

    /// Before each element of an array: true if one follows, false after `]`.
    pub fn next_element(&mut self) -> Parsed<bool> {
        if self.peek() == Some(b']') {
            self.close(b']')?;
            return Ok(false);
        }
        self.comma()?;
        Ok(true)
    }

    pub fn is_null(&mut self) -> Parsed<bool> {
        if self.peek() == Some(b'n') {
            self.eat_literal("null")?;
            self.first = false;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// A non-negative integer without sign, fraction, exponent or leading zero.
    pub fn u64(&mut self) -> Parsed<u64> {
        self.ws();
        let start = self.pos;
        let b = self.bytes();
        // One pass without overflow checks (every record line has two or
        // more numbers): up to 19 digits cannot overflow a u64. The rules
        // are those of `note::parse_decimal_u64`.
        let mut value = 0u64;
        let mut end = start;
        while let Some(&d) = b.get(end)
            && d.is_ascii_digit()
        {
            value = value.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            end += 1;
        }
        self.pos = end;
        let len = end - start;
        if len == 0 || (len > 1 && b[start] == b'0') || matches!(b.get(self.pos), Some(b'.' | b'e' | b'E')) {
            return Err(Malformed);
        }
        if len >= 20 {
            // Only some 20-digit numbers fit (more digits without a leading
            // zero never do): recompute with checks.
            let digits = &b[start..self.pos];
            value = digits
                .iter()
                .try_fold(0u64, |v, &d| v.checked_mul(10)?.checked_add(u64::from(d - b'0')))
                .ok_or(Malformed)?;
        }
        Ok(value)
    }

    /// A shortcut for strings of a known length (hex hashes): if the next
    /// token is `"`, `len` bytes, `"`, and `decode` accepts those bytes, the
    /// string is consumed and the decoded value returned. Otherwise nothing is
    /// consumed and the caller falls back to [`Parser::string`]. `decode` must
    /// accept only bytes that are not `"`, `\` or control characters, so that
    /// `string` would have returned exactly these bytes.
    pub fn fixed_string<T>(&mut self, len: usize, decode: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
        self.ws();
        let b = self.bytes();
        let start = self.pos + 1;
        if b.get(self.pos) != Some(&b'"') || b.get(start + len) != Some(&b'"') {
            return None;
        }
        let value = decode(&b[start..start + len])?;
        self.pos = start + len + 1;
        Some(value)
    }

    /// A shortcut for long strings with a restricted alphabet (base64
    /// payloads) that a decoder can delimit itself: `decode` gets the text
    /// after the opening `"` (to the end of the input) and returns the
    /// string's length, the index of its closing `"`, with the decoded value.
    /// So the string is scanned once, not once for the quote and once to
    /// decode. If `decode` returns None, nothing is consumed and the caller
    /// falls back to [`Parser::string`]. Like [`Parser::fixed_string`],
    /// `decode` must accept only content without `"`, `\` or control
    /// characters, so that `string` would have returned exactly those bytes.
    pub fn plain_string<T>(&mut self, decode: impl FnOnce(&[u8]) -> Option<(usize, T)>) -> Option<T> {
        self.ws();
        let b = self.bytes();
        if b.get(self.pos) != Some(&b'"') {
            return None;
        }
        let start = self.pos + 1;
        let (len, value) = decode(&b[start..])?;
        // Cheap insurance that the decoder stopped where the string ends.
        if b.get(start + len) != Some(&b'"') {
            return None;
        }
        self.pos = start + len + 1;
        Some(value)
    }

    /// If the next token is the string `value` spelled plainly (no
    /// whitespace before it, no escapes), consumes it and returns true;
    /// otherwise consumes nothing and returns false, and the caller reads
    /// the token with [`Parser::string`]. For a value expected almost every
    /// time (`"record"` as a line's type); inlined so that the compare is a
    /// few word loads.
    #[inline(always)]
    pub fn plain_literal(&mut self, value: &str) -> bool {
        let end = self.pos + value.len() + 2;
        let found = self.bytes().get(self.pos..end).is_some_and(|token| {
            let (quote, rest) = token.split_at(1);
            let (text, close) = rest.split_at(value.len());
            quote == b"\"" && text == value.as_bytes() && close == b"\""
        });
        if found {
            self.pos = end;
        }
        found
    }

    /// A string; borrowed when it has no escapes.
    pub fn string(&mut self) -> Parsed<Cow<'a, str>> {
        self.eat(b'"')?;
        let b = self.bytes();
        let start = self.pos;
        let mut i = start + plain_prefix_len(&b[start..]);
        while i < b.len() {
            match b[i] {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(Cow::Borrowed(&self.text[start..i]));
                }
                b'\\' => break,
                c if c < 0x20 => return Err(Malformed),
                _ => i += 1,
            }
        }
        let mut out = String::from(&self.text[start..i]);
        loop {
            let c = *b.get(i).ok_or(Malformed)?;
            match c {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(Cow::Owned(out));
                }
                b'\\' => {
                    let e = *b.get(i + 1).ok_or(Malformed)?;
                    i += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = hex4(b, i)?;
                            i += 4;
                            let code = if (0xd800..0xdc00).contains(&hi) {
                                if b.get(i..i + 2) != Some(b"\\u") {
                                    return Err(Malformed);
                                }
                                let lo = hex4(b, i + 2)?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(Malformed);
                                }
                                i += 6;
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            out.push(char::from_u32(code).ok_or(Malformed)?);
                        }
                        _ => return Err(Malformed),
                    }
                }
                c if c < 0x20 => return Err(Malformed),
                _ => {
                    // Copy one whole UTF-8 character.
                    let ch = self.text[i..].chars().next().ok_or(Malformed)?;
                    out.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
    }
}

/// How many leading bytes need no attention from the string scanner: not
/// `"`, not `\`, not a control character. Eight bytes at a time (payloads
/// are long base64 strings, and this scan was the parser's hot spot); the
/// byte loop after it makes every decision, so the result is only a shortcut.
fn plain_prefix_len(b: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    const SPACES: u64 = u64::from_ne_bytes([0x20; 8]);
    // Flags (at least) every byte that is zero: exact about whether any is.
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
    let mut n = 0;
    for chunk in b.chunks_exact(8) {
        let w = u64::from_ne_bytes(chunk.try_into().expect("chunk of 8"));
        // A byte below 0x20 borrows in `w - 0x20…` and has its top bit clear.
        let control = w.wrapping_sub(SPACES) & !w & HIGHS;
        if has_zero(w ^ QUOTES) | has_zero(w ^ BACKSLASHES) | control != 0 {
            break;
        }
        n += 8;
    }
    n
}

fn hex4(b: &[u8], at: usize) -> Parsed<u32> {
    let digits = b.get(at..at + 4).ok_or(Malformed)?;
    let mut v = 0u32;
    for &d in digits {
        let n = (d as char).to_digit(16).ok_or(Malformed)?;
        v = v * 16 + n;
    }
    Ok(v)
}

/// Appends `text` as a JSON string: `"` and `\` escaped, control characters as
/// `\n`, `\r`, `\t` or `\u00XX`, everything else verbatim. One spelling per string.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends a decimal integer.
pub fn write_u64(out: &mut Vec<u8>, value: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = value;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(text: &str) {
        let mut out = Vec::new();
        write_string(&mut out, text);
        let encoded = String::from_utf8(out).unwrap();
        let mut p = Parser::new(&encoded);
        assert_eq!(p.string().unwrap(), text);
        p.end().unwrap();
    }

    #[test]
    fn strings_round_trip() {
        for s in ["", "plain", "q\"uote", "back\\slash", "nl\nx", "\u{1}\u{1f}", "é€😀", "/"] {
            roundtrip(s);
        }
    }

    #[test]
    fn string_escapes() {
        let check = |json: &str, expected: Option<&str>| {
            let mut p = Parser::new(json);
            assert_eq!(p.string().ok().as_deref(), expected, "{json}");
        };
        check(r#""\u0041\n\/""#, Some("A\n/"));
        check(r#""\ud83d\ude00""#, Some("😀"));
        check(r#""\ud83d""#, None);
        check(r#""\x""#, None);
        check("\"a\u{1}\"", None);
        check(r#""open"#, None);
    }

    #[test]
    fn plain_prefix_stops_before_every_special_byte() {
        for special in 0u8..=255 {
            let is_special = special == b'"' || special == b'\\' || special < 0x20;
            for at in 0..24 {
                let mut buf = [b'A'; 24];
                buf[at] = special;
                let expected = if is_special { at / 8 * 8 } else { 24 };
                assert_eq!(plain_prefix_len(&buf), expected, "byte {special:#x} at {at}");
            }
        }
        assert_eq!(plain_prefix_len(b"abcdefghij"), 8);
    }

    #[test]
    fn numbers_one_spelling() {
        let check = |json: &str, expected: Option<u64>| {
            let mut p = Parser::new(json);
            let got = p.u64().and_then(|v| p.end().map(|_| v)).ok();
            assert_eq!(got, expected, "{json}");
        };
        check("0", Some(0));
        check(" 42 ", Some(42));
        check("18446744073709551615", Some(u64::MAX));
        for bad in ["", "-1", "01", "1.0", "1e3", "18446744073709551616", "+1", "1a"] {
            check(bad, None);
        }
        let mut out = Vec::new();
        write_u64(&mut out, u64::MAX);
        assert_eq!(out, b"18446744073709551615");
        // The one-pass reader agrees with the checkpoint's decimal rules.
        for text in [
            "0",
            "7",
            "10",
            "00",
            "01",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
        ] {
            let mut p = Parser::new(text);
            assert_eq!(p.u64().ok(), crate::note::parse_decimal_u64(text), "{text}");
        }
    }

    #[test]
    fn ordered_keys() {
        let parse = |json: &str| -> Parsed<(u64, Option<u64>)> {
            let mut p = Parser::new(json);
            p.begin_object()?;
            p.key("a")?;
            let a = p.u64()?;
            let b = if p.optional_key("b")? { Some(p.u64()?) } else { None };
            p.end_object()?;
            p.end()?;
            Ok((a, b))
        };
        assert_eq!(parse(r#"{"a":1,"b":2}"#), Ok((1, Some(2))));
        assert_eq!(parse(r#"{ "a" : 1 }"#), Ok((1, None)));
        assert_eq!(parse(r#"{"b":2,"a":1}"#), Err(Malformed));
        assert_eq!(parse(r#"{"a":1,"a":1}"#), Err(Malformed));
        assert_eq!(parse(r#"{"a":1,"c":1}"#), Err(Malformed));
        assert_eq!(parse(r#"{"ab":1}"#), Err(Malformed));
        assert_eq!(parse(r#"{"a":1,}"#), Err(Malformed));
        assert_eq!(parse(r#"{"a":1}x"#), Err(Malformed));
        assert_eq!(parse(r#"{"a":1"#), Err(Malformed));
    }

    proptest::proptest! {
        /// The unchecked digit loop, with its checked recomputation for 20
        /// or more digits, keeps the checkpoint's decimal rules.
        #[test]
        fn numbers_agree_with_parse_decimal_u64(text in "[0-9]{0,23}") {
            let mut p = Parser::new(&text);
            let got = p.u64().and_then(|v| p.end().map(|()| v)).ok();
            proptest::prop_assert_eq!(got, crate::note::parse_decimal_u64(&text));
        }

        /// `plain_literal` consumes only what `string` would read as the
        /// same value, and always takes the plain spelling.
        #[test]
        fn plain_literal_agrees_with_string(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec!["\"", "a", "ab", "b", "\\", "\\u0061", " ", ","]),
                0..8,
            ),
            start in proptest::sample::select(vec!["", "\"ab\"", "\"ab", "\"a"]),
        ) {
            let text = format!("{start}{}", pieces.concat());
            let mut fast = Parser::new(&text);
            let mut general = Parser::new(&text);
            let value = general.string().ok();
            if fast.plain_literal("ab") {
                proptest::prop_assert_eq!(value.as_deref(), Some("ab"));
                proptest::prop_assert_eq!(fast.pos, general.pos);
            } else {
                proptest::prop_assert_eq!(fast.pos, 0);
                proptest::prop_assert!(!text.starts_with("\"ab\""));
            }
        }

        /// `key`'s in-place fast path ends exactly where the general path
        /// would, and fails exactly when it would.
        #[test]
        fn key_fast_path_agrees_with_the_general_path(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![",", " ", "\"", "a", "ab", ":", "b", "\\", "\n", "}"]),
                0..10,
            ),
            first in proptest::prelude::any::<bool>(),
            name in proptest::sample::select(vec!["a", "ab", "b"]),
            // Likely starts, so that the fast path succeeds often enough.
            start in proptest::sample::select(vec!["", ",", "\"ab\":", ",\"ab\":", ",\"a\":", ", \"a\":"]),
        ) {
            let text = format!("{start}{}", pieces.concat());
            let run = |fast: bool| {
                let mut p = Parser { text: &text, pos: 0, depth: 1, first };
                let result = if fast { p.key(name) } else { p.key_general(name) };
                (result, p.pos, p.first)
            };
            proptest::prop_assert_eq!(run(true), run(false), "{:?}", text);
        }
    }

    #[test]
    fn arrays_and_depth() {
        let parse = |json: &str| -> Parsed<Vec<u64>> {
            let mut p = Parser::new(json);
            p.begin_array()?;
            let mut v = Vec::new();
            while p.next_element()? {
                v.push(p.u64()?);
            }
            p.end()?;
            Ok(v)
        };
        assert_eq!(parse("[]"), Ok(vec![]));
        assert_eq!(parse("[1, 2,3]"), Ok(vec![1, 2, 3]));
        assert_eq!(parse("[1,]"), Err(Malformed));
        assert_eq!(parse("[,1]"), Err(Malformed));
        assert_eq!(parse("[1 2]"), Err(Malformed));
        let mut p = Parser::new("[[[[[[[[[1]]]]]]]]]");
        let mut depth = 0;
        while p.begin_array().is_ok() {
            depth += 1;
        }
        assert_eq!(depth, JSON_DEPTH_MAX);
    }
}
