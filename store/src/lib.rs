//! annal-store: append-only ledgers in redb, derived indexes in sled (being written).
