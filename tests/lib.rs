//! annal-tests holds no library code: its one test binary is `tests/main.rs`.
