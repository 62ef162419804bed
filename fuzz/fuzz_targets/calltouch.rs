//! Arbitrary bytes as a `calltouch` export: no panic, and the counts balance.
#![no_main]

use crmflow_core::config::SourceKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crmflow_ingest::memory::fuzz_one(SourceKind::Calltouch, data));
