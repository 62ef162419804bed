//! CLI behaviour: help, validation errors and their exit codes.

use crate::util::{job_with_lake, repo, run, text};

#[test]
fn help_lists_every_command_and_exit_codes() {
    let out = run(&["--help"], &repo());
    assert!(out.status.success());
    let help = text(&out);
    let expected =
        std::fs::read_to_string(repo().join("tests/snapshots/help.txt")).unwrap_or_default();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(repo().join("tests/snapshots")).unwrap();
        std::fs::write(repo().join("tests/snapshots/help.txt"), &help).unwrap();
    } else {
        assert_eq!(
            help, expected,
            "`crmflow --help` changed; rerun with UPDATE_SNAPSHOTS=1 if intended"
        );
    }
}

#[test]
fn validate_accepts_the_bundled_job() {
    let out = run(&["validate", "jobs/nightly.toml"], &repo());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok (9 sources"), "{}", text(&out));
}

#[test]
fn misspelt_key_exits_2_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_with_lake(dir.path(), &dir.path().join("lake"));
    let original = std::fs::read_to_string(&job).unwrap();
    let broken = original.replace("lookback_days = 30", "lokback_days = 30");
    let line = broken
        .lines()
        .position(|l| l.starts_with("lokback_days"))
        .unwrap()
        + 1;
    std::fs::write(&job, broken).unwrap();
    for command in ["validate", "run"] {
        let out = run(&[command, job.to_str().unwrap()], dir.path());
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let msg = text(&out);
        assert!(
            msg.contains("lokback_days") && msg.contains(&format!("line {line}")),
            "{msg}"
        );
    }
}

#[test]
fn missing_source_path_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_with_lake(dir.path(), &dir.path().join("lake"));
    let text_ = std::fs::read_to_string(&job)
        .unwrap()
        .replace("metrica/*.tsv", "metrica/none/*.tsv");
    std::fs::write(&job, text_).unwrap();
    let out = run(&["validate", job.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("sources.location"), "{}", text(&out));
}

#[test]
fn unknown_selector_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_with_lake(dir.path(), &dir.path().join("lake"));
    let out = run(
        &[
            "run",
            job.to_str().unwrap(),
            "--as-of",
            "2026-11-20",
            "--stage",
            "models",
            "--select",
            "no_such_model",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no_such_model"));
}

#[test]
fn models_graph_and_compile() {
    let out = run(&["models", "graph", "--format", "mermaid"], &repo());
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("int_purchases --> rfm"),
        "{}",
        text(&out)
    );
    let out = run(
        &["models", "compile", "rfm", "--as-of", "2026-11-20"],
        &repo(),
    );
    assert!(text(&out).contains("DATE '2026-11-20'"), "{}", text(&out));
}
