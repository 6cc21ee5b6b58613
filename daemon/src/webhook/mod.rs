//! Webhooks: endpoints that follow one ledger, a durable outbox in redb, and
//! a delivery worker that signs each POST per the Standard Webhooks
//! convention. Endpoint secrets are never stored: each is derived from the
//! webhook key (a file or systemd credential, like the signing key) and the
//! endpoint id and secret version, so a backup of the database holds none.

pub mod client;
pub mod sign;
pub mod target;
pub mod worker;

use crate::config::WebhooksConfig;

/// What delivering needs, built once at start when a webhook key is
/// configured (without one, webhooks are off).
#[derive(Debug)]
pub struct Webhooks {
    pub key: sign::WebhookKey,
    pub policy: target::Policy,
    pub tls: client::TlsConfig,
    pub settings: WebhooksConfig,
}
