//! Strict standard base64 decoding for the verifier's hot loop: the RFC 4648
//! alphabet, `=` padding to a multiple of four, zero trailing bits, so each
//! byte string has exactly one accepted spelling. It accepts exactly what
//! `base64`'s `STANDARD` engine accepts (property tests pin that); it is here
//! because it is faster for our use: it checks validity once per 8-character
//! block, and it can find the end of a JSON string while it decodes.

/// Set in a [`PLACED`] entry for a byte outside the alphabet. It lies in the
/// top byte, above the six output bytes of a block, so OR-ing entries keeps
/// it visible.
const INVALID: u64 = 1 << 63;

/// `PLACED[i][c]` holds the 6 bits of character `c` put where they land
/// when `c` is the `i`-th character of an 8-character block that decodes
/// to the 6 bytes `n.to_le_bytes()[..6]`; or [`INVALID`]. A block decodes to
/// the OR of eight entries: one load and one OR per character, no shifts,
/// and one validity test per block. The first quad of a block fills bytes
/// 0..3, so a lone quad (the tail) uses the first four tables the same way.
const PLACED: [[u64; 256]; 8] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut t = [[INVALID; 256]; 8];
    let mut i = 0;
    while i < 8 {
        let mut v = 0;
        while v < 64 {
            // In big-endian order the block is 48 bits, character `i` at
            // bits `42 - 6i` up: place it so, in the top six bytes, then
            // swap so that output byte `k` is the word's byte `k`.
            t[i][alphabet[v] as usize] = ((v as u64) << (42 - 6 * i) << 16).swap_bytes();
            v += 1;
        }
        i += 1;
    }
    t
};

/// The 3 bytes of an unpadded quad in `n.to_le_bytes()[..3]`, with
/// [`INVALID`] set if any character is outside the alphabet (`=` included).
fn quad(q: &[u8; 4]) -> u64 {
    PLACED[0][q[0] as usize] | PLACED[1][q[1] as usize] | PLACED[2][q[2] as usize] | PLACED[3][q[3] as usize]
}

/// The hot loop: decodes leading 8-character blocks of `input` that lie
/// wholly in the alphabet, appending 6 bytes per block to `out`, and stops
/// before the first block that does not (one with `=`, a `"`, any other byte,
/// or fewer than 8 bytes left). Returns how many characters it consumed, a
/// multiple of 8. Padding is never inside such a block, so whatever it
/// consumed is decoded exactly as the whole string's decoding would have it.
fn decode_blocks(input: &[u8], out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.resize(start + input.len() / 8 * 6, 0);
    let mut blocks = 0;
    let (src, _) = input.as_chunks::<8>();
    let (dst, _) = out[start..].as_chunks_mut::<6>();
    for (c, dst) in src.iter().zip(dst) {
        let n = PLACED[0][c[0] as usize]
            | PLACED[1][c[1] as usize]
            | PLACED[2][c[2] as usize]
            | PLACED[3][c[3] as usize]
            | PLACED[4][c[4] as usize]
            | PLACED[5][c[5] as usize]
            | PLACED[6][c[6] as usize]
            | PLACED[7][c[7] as usize];
        if n & INVALID != 0 {
            break;
        }
        dst.copy_from_slice(&n.to_le_bytes()[..6]);
        blocks += 1;
    }
    out.truncate(start + blocks * 6);
    blocks * 8
}

/// Decodes what [`decode_blocks`] left: whole quads, the last of which may
/// be padded. False for anything `STANDARD` would refuse.
fn decode_tail(tail: &[u8], out: &mut Vec<u8>) -> bool {
    if tail.is_empty() {
        return true;
    }
    if !tail.len().is_multiple_of(4) {
        return false;
    }
    let (quads, _) = tail.as_chunks::<4>();
    let (last, body) = quads.split_last().expect("not empty");
    for q in body {
        let n = quad(q);
        if n & INVALID != 0 {
            return false;
        }
        out.extend_from_slice(&n.to_le_bytes()[..3]);
    }
    // The last quad: `xx==` is one byte and `xxx=` two, and the bits that
    // fall off the end (into the next byte; `A` is zero) must be zero, so
    // that each byte string has one spelling.
    let n = match last {
        [a, b, b'=', b'='] => {
            let n = quad(&[*a, *b, b'A', b'A']);
            if n & 0xff00 != 0 {
                return false;
            }
            out.push(n as u8);
            n
        }
        [a, b, c, b'='] => {
            let n = quad(&[*a, *b, *c, b'A']);
            if n & 0xff_0000 != 0 {
                return false;
            }
            out.extend_from_slice(&n.to_le_bytes()[..2]);
            n
        }
        _ => {
            let n = quad(last);
            out.extend_from_slice(&n.to_le_bytes()[..3]);
            n
        }
    };
    n & INVALID == 0
}

/// Decodes `input` into `out` (cleared first). False, with `out` unspecified,
/// for anything `STANDARD` would refuse.
pub(crate) fn decode_into(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let done = decode_blocks(input, out);
    decode_tail(&input[done..], out)
}

/// Decodes base64 in place in JSON text: `rest` starts just after a string's
/// opening `"`. If the bytes up to the next `"` are valid base64, decodes
/// them into `out` (cleared first) and returns their length, the index of
/// that `"`; otherwise None, with `out` unspecified. The caller need not
/// look for the closing quote first: the blocks stop at it, and valid text
/// leaves 0, 4 or 8 characters (a padded last quad and the one before it)
/// between the last whole block and the quote, so only those three places
/// are looked at. If the first `"` is elsewhere, the content up to it is
/// not valid base64 (its length is not a multiple of 4, or a block that
/// failed to decode lies wholly before its last quad), so None is right;
/// and a quote found at a later place is refused too, since the tail then
/// contains the first one.
/// Since every accepted byte is in the base64 alphabet or `=`, the content
/// has no escapes or control characters.
pub(crate) fn decode_quoted(rest: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    out.clear();
    let done = decode_blocks(rest, out);
    let len = [done, done + 4, done + 8].into_iter().find(|&i| rest.get(i) == Some(&b'"'))?;
    decode_tail(&rest[done..len], out).then_some(len)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;

    use super::*;

    fn ours(text: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![7; 5];
        decode_into(text, &mut out).then_some(out)
    }

    #[test]
    fn known_cases() {
        let check = |text: &str| assert_eq!(ours(text.as_bytes()), STANDARD.decode(text).ok(), "{text:?}");
        for text in [
            "",
            "AA==",
            "AAA=",
            "AAAA",
            "AB==",
            "AAB=",
            "QQ==",
            "QUI=",
            "QUJD",
            "QUJDRA==",
            "=",
            "==",
            "A===",
            "====",
            "AA=A",
            "A=AA",
            "AA",
            "AAA",
            "AAAAA",
            "AA==AAAA",
            "AAAA====",
            "+/+/",
            "-_-_",
            "AA\n=",
            " AAA",
            "AAA\u{e9}",
            "Zg==",
            "Zm8=",
            "Zm9v",
            "Zh==",
            "Zm9=",
            "QUJDREVGR0g=",
            "QUJDREVGR0hJ",
            "QUJD=EVGR0hJ",
            "QUJDREVG=0hJ",
            "QUJDREVGR0h=",
            "QUJDREVGR0==",
        ] {
            check(text);
        }
    }

    /// What `decode_quoted` must return: the content up to the first `"`,
    /// decoded by `STANDARD`, and its length.
    fn quoted_expected(rest: &[u8]) -> Option<(usize, Vec<u8>)> {
        let len = rest.iter().position(|&c| c == b'"')?;
        let text = std::str::from_utf8(&rest[..len]).ok()?;
        Some((len, STANDARD.decode(text).ok()?))
    }

    fn quoted_ours(rest: &[u8]) -> Option<(usize, Vec<u8>)> {
        let mut out = vec![7; 5];
        decode_quoted(rest, &mut out).map(|len| (len, out))
    }

    #[test]
    fn quoted_known_cases() {
        for rest in [
            "\"",
            "",
            "AAAA",
            "AAAA\"",
            "QUJDREVGR0g=\",\"x\"",
            "QUJDREVGR0hJ\"",
            "QUJDREVGR0hJSktM\"",
            "QUJDREVGR0hJSktMTU4=\"}",
            "QUJDREVGR0hJSktMTQ==\"}",
            "QUJDREVGR0hJSktMTQ==",
            "QUJDREVGR0hJSktMTQ==AAAA\"",
            "QUJDREVG\\R0hJ\"",
            "QUJD\"REVGR0hJ\"",
            "QUJDREVGR0h\"",
        ] {
            assert_eq!(quoted_ours(rest.as_bytes()), quoted_expected(rest.as_bytes()), "{rest:?}");
        }
    }

    proptest! {
        #[test]
        fn quoted_agrees_with_the_standard_engine_up_to_the_quote(
            text in "[A-Za-z0-9+/=\"\\\\ ]{0,60}",
        ) {
            prop_assert_eq!(quoted_ours(text.as_bytes()), quoted_expected(text.as_bytes()));
        }

        #[test]
        fn quoted_decodes_every_encoding_followed_by_anything(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            after in "[A-Za-z0-9+/=\",:}\\]\\\\ ]{0,30}",
        ) {
            let rest = format!("{}\"{after}", STANDARD.encode(&bytes));
            prop_assert_eq!(quoted_ours(rest.as_bytes()), Some((rest.find('"').unwrap(), bytes)));
        }

        /// Including an early `"`, which must end the string wherever it is.
        #[test]
        fn quoted_agrees_after_any_single_change(
            bytes in proptest::collection::vec(any::<u8>(), 1..60),
            at in any::<prop::sample::Index>(),
            to in prop_oneof![Just(b'"'), Just(b'='), any::<u8>()],
        ) {
            let mut rest = STANDARD.encode(&bytes).into_bytes();
            rest.extend_from_slice(b"\",\"parents\":[]");
            let i = at.index(rest.len());
            rest[i] = to;
            prop_assert_eq!(quoted_ours(&rest), quoted_expected(&rest));
        }

        #[test]
        fn accepts_exactly_what_the_standard_engine_accepts(text in "[A-Za-z0-9+/=\\-_ .]{0,70}") {
            prop_assert_eq!(ours(text.as_bytes()), STANDARD.decode(&text).ok());
        }

        #[test]
        fn round_trips_every_byte_string(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let text = STANDARD.encode(&bytes);
            prop_assert_eq!(ours(text.as_bytes()), Some(bytes));
        }

        #[test]
        fn any_single_change_to_a_valid_encoding_agrees(
            bytes in proptest::collection::vec(any::<u8>(), 1..60),
            at in any::<prop::sample::Index>(),
            to in any::<u8>(),
        ) {
            let mut text = STANDARD.encode(&bytes).into_bytes();
            let i = at.index(text.len());
            text[i] = to;
            let expected = std::str::from_utf8(&text).ok().and_then(|t| STANDARD.decode(t).ok());
            prop_assert_eq!(ours(&text), expected);
        }
    }
}
