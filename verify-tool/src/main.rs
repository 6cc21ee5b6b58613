//! annal-verify: the offline verifier (being written).

fn main() {}
