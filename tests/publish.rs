//! The publish stage end to end on the bundled sample: manifests, diffs, reruns,
//! a crash before the commit, the removal guard, PII, and the PostgreSQL feed against
//! a real server (started by `scripts/test`).

use std::path::{Path, PathBuf};

use crate::util::{crmflow, job_with_lake, run, text, tree};

fn run_date(job: &Path, cwd: &Path, as_of: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", job.to_str().unwrap(), "--as-of", as_of];
    args.extend_from_slice(extra);
    run(&args, cwd)
}

/// Manifests of a feed in the lake's publication history.
fn manifests(lake: &Path, segment: &str, channel: &str) -> Vec<(PathBuf, serde_json::Value)> {
    let feed = lake.join("publish").join(segment).join(channel);
    let mut out = vec![];
    for (rel, bytes) in tree(&feed) {
        if rel.ends_with("_manifest.json") {
            out.push((
                feed.join(&rel).parent().unwrap().to_path_buf(),
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            ));
        }
    }
    out.sort_by_key(|(_, m)| {
        (
            m["as_of"].as_str().unwrap().to_string(),
            m["committed_at"].as_str().unwrap().to_string(),
        )
    });
    out
}

fn last_record(lake: &Path) -> serde_json::Value {
    let mut records: Vec<serde_json::Value> = std::fs::read_dir(lake.join("_runs"))
        .unwrap()
        .flatten()
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
        .collect();
    records.sort_by_key(|r| r["started_at"].as_str().unwrap().to_string());
    records.pop().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Every file a manifest lists exists with its size and checksum.
fn assert_consistent(lake: &Path, segment: &str, channel: &str, manifest: &serde_json::Value) {
    let feed = lake.join("publish").join(segment).join(channel);
    for f in manifest["files"].as_array().unwrap() {
        let bytes = std::fs::read(feed.join(f["path"].as_str().unwrap())).unwrap();
        assert_eq!(bytes.len() as u64, f["bytes"].as_u64().unwrap());
        assert_eq!(sha256_hex(&bytes), f["sha256"].as_str().unwrap());
    }
}

#[test]
fn feeds_diff_against_the_previous_date_and_a_rerun_publishes_the_same_content() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = job_with_lake(dir.path(), &lake);
    let out = run_date(&job, dir.path(), "2026-11-12", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run_date(&job, dir.path(), "2026-11-20", &[]);
    assert!(out.status.success(), "{}", text(&out));

    let record = last_record(&lake);
    let feeds = record["publications"].as_array().unwrap();
    assert_eq!(feeds.len(), 9, "eight segments, winback on two channels");
    for f in feeds {
        // Nothing lost: candidates = published + dropped.
        let dropped: u64 = f["dropped"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(
            f["candidates"].as_u64().unwrap(),
            f["rows"].as_u64().unwrap() + dropped,
            "{f}"
        );
        assert_eq!(f["status"], "published", "{f}");
    }
    let cross = manifests(&lake, "cross_sell", "email");
    assert_eq!(cross.len(), 2);
    let (first, second) = (&cross[0].1, &cross[1].1);
    assert_eq!(second["previous_run_id"], first["run_id"]);
    assert_eq!(second["previous_as_of"], "2026-11-12");
    // The diff is consistent: previous + added - removed = current.
    assert_eq!(
        first["rows"].as_u64().unwrap() + second["added"].as_u64().unwrap()
            - second["removed"].as_u64().unwrap(),
        second["rows"].as_u64().unwrap()
    );
    for (_, m) in &cross {
        assert_consistent(&lake, "cross_sell", "email", m);
    }
    let feed_csv = std::fs::read_to_string(cross[1].0.join("feed.csv")).unwrap();
    assert!(
        feed_csv.starts_with("customer_id,email,sku,because_of_sku\n"),
        "{feed_csv}"
    );

    // Rerun of the same date: every feed unchanged, nothing new written.
    let before = tree(&lake.join("publish"));
    let out = run_date(&job, dir.path(), "2026-11-20", &["--stage", "publish"]);
    assert!(out.status.success(), "{}", text(&out));
    let record = last_record(&lake);
    for f in record["publications"].as_array().unwrap() {
        assert_eq!(f["status"], "unchanged", "{f}");
    }
    assert_eq!(before, tree(&lake.join("publish")));

    // A dry run writes nothing, not even a run record.
    let runs_before = std::fs::read_dir(lake.join("_runs")).unwrap().count();
    let out = run(
        &[
            "publish",
            job.to_str().unwrap(),
            "--as-of",
            "2026-11-20",
            "--dry-run",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("dry run (as_of 2026-11-20): nothing written"));
    assert!(text(&out).contains("feed cross_sell"));
    assert_eq!(before, tree(&lake.join("publish")));
    assert_eq!(
        runs_before,
        std::fs::read_dir(lake.join("_runs")).unwrap().count()
    );
}

#[test]
fn a_publish_killed_before_its_manifest_leaves_the_previous_feed_readable() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = job_with_lake(dir.path(), &lake);
    let out = run_date(&job, dir.path(), "2026-11-12", &[]);
    assert!(out.status.success(), "{}", text(&out));

    // The first feed's files are written, then the process dies before the manifest.
    let killed = crmflow()
        .args(["run", job.to_str().unwrap(), "--as-of", "2026-11-20"])
        .current_dir(dir.path())
        .env("CRMFLOW_LOG", "warn")
        .env("CRMFLOW_FAILPOINT", "publish_before_manifest")
        .output()
        .unwrap();
    assert!(
        !killed.status.success(),
        "the failpoint should abort the run"
    );
    let (seg, ch) = ("best_customers_ads", "ads");
    let unfinished = lake.join("publish").join(seg).join(ch).join("2026-11-20");
    assert!(unfinished.exists(), "the killed run wrote files");
    let committed = manifests(&lake, seg, ch);
    assert_eq!(
        committed.len(),
        1,
        "only the previous publication is committed"
    );
    assert_eq!(committed[0].1["as_of"], "2026-11-12");
    assert_consistent(&lake, seg, ch, &committed[0].1);

    // The next run (taking over the dead run's lease) completes the publication and
    // removes the unfinished folder.
    let out = run_date(&job, dir.path(), "2026-11-20", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let committed = manifests(&lake, seg, ch);
    assert_eq!(committed.len(), 2);
    assert_eq!(committed[1].1["as_of"], "2026-11-20");
    // Object stores have no folders: the unfinished publication's files are gone.
    let runs: std::collections::BTreeSet<String> = tree(&unfinished)
        .into_iter()
        .map(|(p, _)| p.split('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "the unfinished publication was removed: {runs:?}"
    );
    assert_consistent(&lake, seg, ch, &committed[1].1);
}

#[test]
fn ad_feeds_carry_only_digests() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = job_with_lake(dir.path(), &lake);
    let out = run_date(&job, dir.path(), "2026-11-20", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let feed = lake.join("publish/best_customers_ads/ads");
    let files = tree(&feed);
    assert!(
        files
            .iter()
            .any(|(p, _)| p.ends_with("audience_sha256.csv"))
    );
    for (path, bytes) in &files {
        if path.ends_with(".csv") {
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(!text.contains('@'), "an email in {path}");
            assert!(!text.contains('+'), "a phone in {path}");
            for line in text.lines().skip(1) {
                for cell in line.split(',') {
                    assert!(
                        cell.is_empty()
                            || (cell.len() >= 16 && cell.bytes().all(|b| b.is_ascii_hexdigit())),
                        "not a digest in {path}: {cell}"
                    );
                }
            }
        }
    }
    let sha = files
        .iter()
        .find(|(p, _)| p.ends_with("audience_sha256.csv"))
        .unwrap();
    let first_row = String::from_utf8(sha.1.clone()).unwrap();
    let cells: Vec<&str> = first_row.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(cells[0].len(), 64);
}

#[test]
fn the_removal_guard_refuses_a_shrinking_feed_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of the models whose segment can be edited.
    let sql = dir.path().join("sql");
    copy_dir(&crate::util::repo().join("sql"), &sql);
    let lake = dir.path().join("lake");
    let job = job_with_lake(dir.path(), &lake);
    let text_job = std::fs::read_to_string(&job).unwrap().replace(
        &format!("\"{}\"", crate::util::repo().join("sql").display()),
        &format!("\"{}\"", sql.display()),
    );
    std::fs::write(&job, text_job).unwrap();
    let out = run_date(&job, dir.path(), "2026-11-20", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let before = manifests(&lake, "cross_sell", "email");
    assert!(before[0].1["rows"].as_u64().unwrap() > 20);

    let segment = sql.join("segments/cross_sell.sql");
    let shrunk = std::fs::read_to_string(&segment).unwrap() + "\nand customer_id < '1'\n";
    std::fs::write(&segment, shrunk).unwrap();
    let out = run_date(
        &job,
        dir.path(),
        "2026-11-21",
        &["--stage", "models,publish"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("cross_sell") && t.contains("max_removed_share") && t.contains("--force"),
        "{t}"
    );
    assert_eq!(
        manifests(&lake, "cross_sell", "email").len(),
        1,
        "nothing published"
    );
    // Other feeds were still published.
    assert_eq!(manifests(&lake, "churn_survey", "email").len(), 2);

    let out = run_date(
        &job,
        dir.path(),
        "2026-11-21",
        &["--stage", "publish", "--force"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let after = manifests(&lake, "cross_sell", "email");
    assert_eq!(after.len(), 2);
    assert!(after[1].1["removed"].as_u64().unwrap() * 2 > before[0].1["rows"].as_u64().unwrap());
}

fn copy_dir(from: &Path, to: &Path) {
    for (rel, bytes) in tree(from) {
        let target = to.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
}

fn pg_connection() -> String {
    std::env::var("CRMFLOW_TEST_PG").expect(
        "CRMFLOW_TEST_PG is not set: run the suite with `bash scripts/test`, which starts PostgreSQL",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_feed_tables_are_replaced_in_one_transaction() {
    let connection = pg_connection();
    let schema = format!("crmflow_test_{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = job_with_lake(dir.path(), &lake);
    let mut text_job = std::fs::read_to_string(&job).unwrap();
    text_job.push_str(&format!(
        "\n[[destinations]]\nname = \"warehouse\"\nkind = \"postgres\"\nurl_env = \"CRMFLOW_TEST_PG\"\nschema = \"{schema}\"\n"
    ));
    std::fs::write(&job, text_job).unwrap();
    for as_of in ["2026-11-12", "2026-11-20", "2026-11-20"] {
        let out = crmflow()
            .args(["run", job.to_str().unwrap(), "--as-of", as_of])
            .current_dir(dir.path())
            .env("CRMFLOW_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let (client, conn) = tokio_postgres::connect(&connection, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let cross = manifests(&lake, "cross_sell", "email");
    let rows: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".cross_sell__email"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as u64, cross[1].1["rows"].as_u64().unwrap());
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), max(as_of)::text, count(DISTINCT run_id) FROM \"{schema}\".crmflow_publications WHERE segment = 'cross_sell'"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        2,
        "two dates published, the rerun added nothing"
    );
    assert_eq!(row.get::<_, String>(1), "2026-11-20");
    // Typed columns: text for addresses, timestamptz for timestamps.
    let types: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'leads_without_order__sms' ORDER BY ordinal_position",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        types,
        [
            ("customer_id".to_string(), "text".to_string()),
            ("phone".into(), "text".into()),
            ("last_lead_at".into(), "timestamp with time zone".into()),
        ]
    );
    let phone: String = client
        .query_one(
            &format!("SELECT phone FROM \"{schema}\".leads_without_order__sms LIMIT 1"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(phone.starts_with('+'));
    // No staging table is left behind.
    let leftovers: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name LIKE '%__incoming'",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

/// The customer ids of a Parquet file, sorted.
#[cfg(feature = "delta")]
fn parquet_customer_ids(path: &Path) -> Vec<String> {
    use datafusion::arrow::array::AsArray;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut ids = vec![];
    for batch in reader {
        let batch = batch.unwrap();
        let column = batch.column_by_name("customer_id").unwrap();
        let column =
            datafusion::arrow::compute::cast(column, &datafusion::arrow::datatypes::DataType::Utf8)
                .unwrap();
        ids.extend(
            column
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string()),
        );
    }
    ids.sort();
    ids
}

#[cfg(feature = "delta")]
#[test]
fn delta_feed_tables_are_replaced_in_one_commit_per_date() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = job_with_lake(dir.path(), &lake);
    let delta = dir.path().join("delta");
    let mut text_job = std::fs::read_to_string(&job).unwrap();
    text_job.push_str(&format!(
        "\n[[destinations]]\nname = \"lakehouse\"\nkind = \"delta\"\nlocation = \"{}\"\n",
        delta.display()
    ));
    std::fs::write(&job, text_job).unwrap();
    for as_of in ["2026-11-12", "2026-11-20", "2026-11-20"] {
        let out = run_date(&job, dir.path(), as_of, &[]);
        assert!(out.status.success(), "{}", text(&out));
    }

    // Replay the Delta log as any reader would: commits in version order, adds minus removes.
    let table = delta.join("cross_sell__email");
    let mut commits: Vec<(PathBuf, Vec<serde_json::Value>)> =
        std::fs::read_dir(table.join("_delta_log"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| {
                let actions = std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                (p, actions)
            })
            .collect();
    commits.sort_by(|a, b| a.0.cmp(&b.0));
    let mut live = std::collections::BTreeSet::new();
    let mut published_dates = vec![];
    for (_, actions) in &commits {
        for a in actions {
            if let Some(add) = a.get("add") {
                live.insert(add["path"].as_str().unwrap().to_string());
            }
            if let Some(remove) = a.get("remove") {
                assert!(
                    live.remove(remove["path"].as_str().unwrap()),
                    "removes a live file"
                );
            }
        }
        let published = actions
            .iter()
            .find_map(|a| a.get("commitInfo").and_then(|c| c.get("crmflow.as_of")));
        if let Some(as_of) = published {
            published_dates.push(as_of.as_str().unwrap().to_string());
            // Each publication replaces the whole table: after it, only its files live.
            let added = actions.iter().filter(|x| x.get("add").is_some()).count();
            assert_eq!(live.len(), added, "the commit replaced every earlier file");
        }
    }
    assert_eq!(
        published_dates,
        ["2026-11-12", "2026-11-20"],
        "one commit per date; the rerun committed nothing"
    );

    // The live files hold exactly the rows of the latest publication's snapshot.
    let cross = manifests(&lake, "cross_sell", "email");
    let (folder, manifest) = cross.last().unwrap();
    let snapshot = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["role"] == "snapshot")
        .unwrap();
    let expected = parquet_customer_ids(
        &folder
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join(snapshot["path"].as_str().unwrap()),
    );
    let mut actual: Vec<String> = live
        .iter()
        .flat_map(|p| parquet_customer_ids(&table.join(p)))
        .collect();
    actual.sort();
    assert_eq!(actual.len() as u64, manifest["rows"].as_u64().unwrap());
    assert_eq!(actual, expected);

    // And the deltalake crate reads the same table at the same version.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let version = runtime.block_on(async {
        let url = crmflow_publish::deltalake::ensure_table_uri(table.to_str().unwrap()).unwrap();
        let t = crmflow_publish::deltalake::open_table(url).await.unwrap();
        t.version()
    });
    assert_eq!(version, Some(commits.len() as u64 - 1));
}
