//! Strict standard base64 decoding for the verifier's hot loop: the RFC 4648
//! alphabet, `=` padding to a multiple of four, zero trailing bits, so each
//! byte string has exactly one accepted spelling. It accepts exactly what
//! `base64`'s `STANDARD` engine accepts (property tests pin that); it is here
//! because it checks validity once per string instead of once per quad.

const INVALID: u8 = 0xff;

const TABLE: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Decodes `input` into `out` (cleared first). False, with `out` unspecified,
/// for anything `STANDARD` would refuse.
pub(crate) fn decode_into(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    if input.is_empty() {
        return true;
    }
    if !input.len().is_multiple_of(4) {
        return false;
    }
    let (body, last) = input.split_at(input.len() - 4);
    out.resize(body.len() / 4 * 3, 0);
    // Every value is below 64 unless a byte was invalid (0xff): OR them all
    // and look once at the end; the output is unspecified on failure anyway.
    let mut seen = 0u8;
    let (pairs, rest) = body.as_chunks::<8>();
    let (out_pairs, out_rest) = out.as_chunks_mut::<6>();
    for (src, dst) in pairs.iter().zip(out_pairs.iter_mut()) {
        let mut n = 0u64;
        for &c in src {
            let v = TABLE[c as usize];
            seen |= v;
            n = (n << 6) | u64::from(v);
        }
        dst.copy_from_slice(&n.to_be_bytes()[2..]);
    }
    if let Some(quad) = rest.first_chunk::<4>() {
        let mut n = 0u32;
        for &c in quad {
            let v = TABLE[c as usize];
            seen |= v;
            n = (n << 6) | u32::from(v);
        }
        out_rest[..3].copy_from_slice(&n.to_be_bytes()[1..]);
    }
    let (a, b) = (TABLE[last[0] as usize], TABLE[last[1] as usize]);
    seen |= a | b;
    match (last[2], last[3]) {
        (b'=', b'=') => {
            // One byte; the low four bits of the second character must be zero.
            if b & 0x0f != 0 {
                return false;
            }
            out.push((a << 2) | (b >> 4));
        }
        (c, b'=') => {
            let c = TABLE[c as usize];
            seen |= c;
            // Two bytes; the low two bits of the third character must be zero.
            if c & 0x03 != 0 {
                return false;
            }
            let n = (u32::from(a) << 18) | (u32::from(b) << 12) | (u32::from(c) << 6);
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8]);
        }
        (c, d) => {
            let (c, d) = (TABLE[c as usize], TABLE[d as usize]);
            seen |= c | d;
            let n = (u32::from(a) << 18) | (u32::from(b) << 12) | (u32::from(c) << 6) | u32::from(d);
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        }
    }
    seen & 0xc0 == 0
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

    proptest! {
        #[test]
        fn accepts_exactly_what_the_standard_engine_accepts(text in "[A-Za-z0-9+/=\\-_ .]{0,40}") {
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
