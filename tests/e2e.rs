//! The nightly job end to end on the bundled sample.

use std::path::Path;

use crate::util::{job_with_lake, run, text, tree};

const AS_OF: &str = "2026-11-20";

fn run_job(job: &Path, cwd: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", job.to_str().unwrap(), "--as-of", AS_OF];
    args.extend_from_slice(extra);
    run(&args, cwd)
}

fn records(lake: &Path) -> Vec<serde_json::Value> {
    let mut out = vec![];
    for e in std::fs::read_dir(lake.join("_runs")).unwrap().flatten() {
        out.push(serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap());
    }
    out.sort_by_key(|r: &serde_json::Value| r["started_at"].as_str().unwrap_or("").to_string());
    out
}

#[test]
fn rerun_gives_byte_identical_lake_tables_and_balanced_counts() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = job_with_lake(dir.path(), &lake);
    let first = run_job(&job, dir.path(), &[]);
    assert!(first.status.success(), "{}", text(&first));
    let snapshot = |sub: &str| tree(&lake.join(sub));
    let (raw1, marts1) = (snapshot("raw"), snapshot("marts"));
    assert!(marts1.len() >= 15, "marts: {}", marts1.len());
    let second = run_job(&job, dir.path(), &[]);
    assert!(second.status.success(), "{}", text(&second));
    assert!(raw1 == snapshot("raw"), "raw tables changed on rerun");
    for ((p1, b1), (p2, b2)) in marts1.iter().zip(snapshot("marts").iter()) {
        assert_eq!(p1, p2);
        assert!(b1 == b2, "{p1} changed on rerun");
    }
    let recs = records(&lake);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        assert_eq!(r["status"], "ok");
        assert_eq!(r["exit_code"], 0);
        for s in r["sources"].as_array().unwrap() {
            let n = |k: &str| s[k].as_u64().unwrap();
            assert_eq!(
                n("rows_read"),
                n("rows_loaded") + n("rows_quarantined") + n("duplicates_collapsed"),
                "{s}"
            );
        }
        let failed: Vec<_> = r["tests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["passed"] != true)
            .collect();
        assert!(failed.is_empty(), "failed data tests: {failed:?}");
    }
    // The sample has every quirk: quarantined rows, duplicates and rows past the cut-off.
    let sources = recs[0]["sources"].as_array().unwrap();
    let total = |k: &str| sources.iter().map(|s| s[k].as_u64().unwrap()).sum::<u64>();
    assert!(
        total("rows_quarantined") > 0
            && total("duplicates_collapsed") > 0
            && total("rows_after_cutoff") > 0
    );

    let out = run(&["runs", job.to_str().unwrap()], dir.path());
    assert!(out.status.success());
    assert_eq!(
        text(&out).lines().filter(|l| l.contains("Ok")).count(),
        2,
        "{}",
        text(&out)
    );
}

#[test]
fn a_second_run_is_refused_while_the_lease_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = job_with_lake(dir.path(), &lake);
    // A live process of this host (this test) holds the lease.
    std::fs::create_dir_all(lake.join("_leases")).unwrap();
    let holder = serde_json::json!({
        "job": "nightly", "run_id": "nightly-held", "host": gethostname(),
        "pid": std::process::id(), "started_at": chrono_now(),
    });
    std::fs::write(lake.join("_leases/nightly.json"), holder.to_string()).unwrap();
    let out = run_job(&job, dir.path(), &["--stage", "ingest"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("already running")
            && msg.contains("nightly-held")
            && msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    std::fs::remove_file(lake.join("_leases/nightly.json")).unwrap();
    let out = run_job(&job, dir.path(), &["--stage", "ingest"]);
    assert!(out.status.success(), "{}", text(&out));
}

fn gethostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn chrono_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn quarantine_gate_exits_3_naming_the_worst_file() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = job_with_lake(dir.path(), &lake);
    let t = std::fs::read_to_string(&job)
        .unwrap()
        .replace("max_quarantine_ratio = 0.01", "max_quarantine_ratio = 0.0");
    std::fs::write(&job, t).unwrap();
    let out = run_job(&job, dir.path(), &["--stage", "ingest"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("worst files") && text(&out).contains("calls_offline.csv"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_wrong_export_for_a_source_names_file_and_missing_columns() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = job_with_lake(dir.path(), &lake);
    let t = std::fs::read_to_string(&job)
        .unwrap()
        .replace("metrica/*.tsv", "shopify/*.csv");
    std::fs::write(&job, t).unwrap();
    let out = run_job(&job, dir.path(), &["--stage", "ingest"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("orders_export_1.csv") && text(&out).contains("`ym:s:visitID`"),
        "{}",
        text(&out)
    );
}

#[test]
fn logs_of_a_full_run_carry_no_emails_or_phones() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = job_with_lake(dir.path(), &lake);
    let out = crate::util::crmflow()
        .args([
            "--log",
            "debug",
            "--log-format",
            "json",
            "run",
            job.to_str().unwrap(),
            "--as-of",
            AS_OF,
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.lines().count() > 20, "expected debug logs");
    for domain in [
        "@gmail.com",
        "@googlemail.com",
        "@yandex.ru",
        "@mail.ru",
        "@example.com",
    ] {
        assert!(!logs.contains(domain), "an email of {domain} in the logs");
    }
    let phone_like = regex_like_phone(&logs);
    assert!(phone_like.is_none(), "a phone in the logs: {phone_like:?}");
}

/// Finds `+79...` or `79.........` (11 digits starting with 7) in text.
fn regex_like_phone(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        let start = if bytes[i] == b'+' { i + 1 } else { i };
        if start + 11 <= bytes.len()
            && bytes[start] == b'7'
            && bytes[start + 1] == b'9'
            && bytes[start..start + 11].iter().all(u8::is_ascii_digit)
            && (start + 11 == bytes.len() || !bytes[start + 11].is_ascii_digit())
            && (i == 0 || !bytes[i - 1].is_ascii_digit())
        {
            return Some(text[i..start + 11].to_string());
        }
    }
    None
}

#[test]
fn demo_runs_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let repo = crate::util::repo();
    let out = run(
        &[
            "demo",
            "--job",
            repo.join("jobs/nightly.toml").to_str().unwrap(),
            "--out",
            dir.path().join("demo").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let s = text(&out);
    for expected in [
        "Top channels per attribution model",
        "markov",
        "Repeat-purchase rate",
        "source shopify",
    ] {
        assert!(s.contains(expected), "missing {expected:?} in:\n{s}");
    }
}

/// Marts on the bundled sample, compared with `tests/golden/<mart>.csv`
/// (`UPDATE_SNAPSHOTS=1` rewrites them after a reviewed change).
#[test]
fn marts_on_the_sample_match_the_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = job_with_lake(dir.path(), &lake);
    let out = run_job(&job, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let golden = crate::util::repo().join("tests/golden");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let marts = [
        "attribution_by_channel",
        "channel_roi",
        "cohort_retention",
        "second_purchase",
        "rfm",
        "customer_lifecycle",
        "product_affinity",
        "kpi_monthly",
        "repeat_uplift",
        "attribution_paths",
    ];
    let mut mismatches = vec![];
    for mart in marts {
        let sql = format!("SELECT * FROM {mart}");
        let out = run(
            &[
                "query",
                "--job",
                job.to_str().unwrap(),
                "--format",
                "csv",
                &sql,
            ],
            dir.path(),
        );
        assert!(out.status.success(), "{mart}: {}", text(&out));
        // Header first, then rows sorted: independent of the scan's partitioning.
        let csv = String::from_utf8(out.stdout).unwrap();
        let mut lines: Vec<&str> = csv.lines().collect();
        if lines.len() > 1 {
            lines[1..].sort_unstable();
        }
        let csv = lines.join("\n") + "\n";
        let path = golden.join(format!("{mart}.csv"));
        if update {
            std::fs::create_dir_all(&golden).unwrap();
            std::fs::write(&path, &csv).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(csv.as_str()) {
            mismatches.push(mart);
        }
    }
    assert!(
        mismatches.is_empty(),
        "marts differ from tests/golden: {mismatches:?}"
    );
}
