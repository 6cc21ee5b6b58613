//! Goal: `annald keys generate|show` make and describe signing keys safely:
//! the file is 0600 and never overwritten, only public material is printed,
//! a group- or world-readable key is refused, and what `show` prints is what
//! `annal-verify --trust-key` takes. Method: run the real binary.

use std::os::unix::fs::PermissionsExt as _;

use crate::harness::run_annald as run;

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

#[test]
fn generate_then_show() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("signing.key");
    let key_arg = key.to_str().expect("utf-8 path");
    let (code, generated, _) = run(&["keys", "generate", "--out", key_arg, "--name", "annal.example"]);
    assert_eq!(code, Some(0));
    let mode = std::fs::metadata(&key).expect("key written").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let secret = std::fs::read_to_string(&key).expect("key readable");
    assert!(secret.starts_with("PRIVATE+KEY+annal.example+"));
    // PRIVATE+KEY+name+id+keydata: the key data is base64 and may itself
    // contain `+`, so it is everything after the fourth `+` (the text after
    // the last `+` can be a few characters that occur anywhere by chance).
    let secret_part = secret.trim_end().splitn(5, '+').nth(4).expect("key data");
    assert!(secret_part.len() >= 40, "key data is the whole secret: {}", secret_part.len());
    assert!(!generated.contains(secret_part), "generate must not print the secret");

    let (code, shown, _) = run(&["keys", "show", key_arg]);
    assert_eq!(code, Some(0));
    assert!(!shown.contains(secret_part), "show must not print the secret");
    for name in ["key_id:", "fingerprint:", "public_key:", "vkey:"] {
        assert_eq!(field(&generated, name), field(&shown, name), "{name}");
    }
    assert!(field(&shown, "fingerprint:").starts_with("SHA256:"));
    assert!(field(&shown, "public_key:").starts_with("ed25519:"));
    assert!(field(&shown, "vkey:").starts_with(&format!("annal.example+{}+", field(&shown, "key_id:"))));

    // Never overwrite a key.
    let (code, _, err) = run(&["keys", "generate", "--out", key_arg]);
    assert_eq!(code, Some(73), "{err}");
    assert_eq!(std::fs::read_to_string(&key).expect("still there"), secret);

    // A readable-by-others key is refused.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, _, err) = run(&["keys", "show", key_arg]);
    assert_eq!(code, Some(78));
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn refusals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.key");
    let (code, _, _) = run(&["keys", "show", missing.to_str().expect("utf-8")]);
    assert_eq!(code, Some(66));
    let junk = dir.path().join("junk.key");
    std::fs::write(&junk, "not a key\n").expect("write");
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, _, err) = run(&["keys", "show", junk.to_str().expect("utf-8")]);
    assert_eq!(code, Some(78), "{err}");
    let out = dir.path().join("x.key");
    let (code, _, _) =
        run(&["keys", "generate", "--out", out.to_str().expect("utf-8"), "--name", "bad name"]);
    assert_eq!(code, Some(2));
    assert!(!out.exists());
}
