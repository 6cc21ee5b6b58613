//! The one line annal-verify prints. The writer lives in annal-chain
//! (`Outcome::human`, `Outcome::json`) so that the daemon's `POST /v1/verify`
//! answers with the very same bytes.

pub use annal_chain::{Artifact, Outcome};

/// The human sentence, with its newline.
pub fn human(outcome: &Outcome) -> String {
    outcome.human()
}

/// The JSON object, with its newline.
pub fn json(outcome: &Outcome) -> String {
    outcome.json()
}
