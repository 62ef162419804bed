//! End-to-end and CLI tests: the `crmflow` binary on the bundled sample.
//! One integration binary (ripgrep's layout): modules below.

mod cli;
mod e2e;
mod util;
