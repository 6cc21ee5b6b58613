//! annal-bench: benchmark drivers and artifact generators (being written).

fn main() {}
