//! annal's workspace-level test binary: structural rules (tidy) now, black-box
//! tests against the real `annald` binary as the daemon lands.

mod api;
mod api_docs;
mod auth_cache;
mod crash;
mod digest;
mod faults;
mod harness;
mod keys;
mod lineage;
mod openapi;
mod operate;
mod packaging;
mod serve;
mod tidy;
mod webhooks;
