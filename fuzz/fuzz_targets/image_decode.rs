//! `cargo +nightly fuzz run image_decode`: see [`bodies::image_decode`].
#![no_main]

#[path = "bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::image_decode(data));
