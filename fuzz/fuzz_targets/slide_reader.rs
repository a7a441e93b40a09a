//! `cargo +nightly fuzz run slide_reader`: see [`bodies::slide_reader`].
#![no_main]

#[path = "bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::slide_reader(data));
