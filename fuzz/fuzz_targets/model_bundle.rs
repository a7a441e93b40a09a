//! `cargo +nightly fuzz run model_bundle`: see [`bodies::model_bundle`].
#![no_main]

#[path = "bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::model_bundle(data));
