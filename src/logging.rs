//! Logging: human lines on a terminal, JSON lines for schedulers, to stderr.
//! Log lines carry counts, names and paths, never emails or phones.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// A bare level (`debug`) applies to crmflow's own crates; other crates stay at `warn`,
/// so that engine internals (query plans with their literals) never reach the log.
/// Full directives (`info,datafusion=debug`) are taken as written.
pub fn directives(filter: &str) -> String {
    let level = filter.trim();
    if ["trace", "debug", "info", "warn", "error", "off"].contains(&level) {
        let ours = [
            "crmflow",
            "crmflow_core",
            "crmflow_ingest",
            "crmflow_transform",
        ];
        let mut d = String::from("warn");
        for c in ours {
            d.push_str(&format!(",{c}={level}"));
        }
        d
    } else {
        level.to_string()
    }
}

pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(directives(filter)).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.with_target(false).compact().try_init(),
    };
}

/// A progress bar on stderr, only when stderr is a terminal.
pub fn progress(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    Some(bar)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bare_level_applies_to_crmflow_only() {
        assert_eq!(
            super::directives("debug"),
            "warn,crmflow=debug,crmflow_core=debug,crmflow_ingest=debug,crmflow_transform=debug"
        );
        assert_eq!(
            super::directives("info,datafusion=debug"),
            "info,datafusion=debug"
        );
    }
}
