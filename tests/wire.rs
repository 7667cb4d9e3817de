//! The wire: patrol's dendrite and binary against a real Python `bittensor==10.3.1` `bt.Axon`, its
//! request against the captured `bt.Dendrite` vectors, the Python harness itself, and validators
//! whose answers are garbage, redirects or hostile text.

/// `patrol check`/`post` against a real `bt.Axon`; the request against the captured vectors.
mod interop;
/// Self-tests of the real-Python bittensor harness (bt.Dendrite <-> bt.Axon).
mod python_harness;
/// Garbage, redirects and hostile text from a validator: a category, never followed, cleaned.
mod validator_answers;
