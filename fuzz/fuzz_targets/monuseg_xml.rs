//! `cargo +nightly fuzz run monuseg_xml`: see [`bodies::monuseg_xml`].
#![no_main]

#[path = "bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::monuseg_xml(data));
