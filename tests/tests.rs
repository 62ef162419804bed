//! End-to-end and CLI tests: the `crmflow` binary on the bundled sample.
//! One integration binary (ripgrep's layout): modules below.
#![allow(clippy::unwrap_used)]

mod cli;
mod e2e;
mod publish;
mod s3;
mod util;
