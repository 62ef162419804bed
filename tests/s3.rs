//! The object-store path against a real S3-compatible server on loopback (moto's
//! server, started by `scripts/test`): sources read from `s3://` globs, the lake on
//! `s3://`, create-only leases, run records and queries over the S3 lake.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::util::{repo, run, text};

fn endpoint() -> String {
    std::env::var("CRMFLOW_TEST_S3_ENDPOINT")
        .expect("CRMFLOW_TEST_S3_ENDPOINT is not set: run the suite with `bash scripts/test`, which starts the S3 server")
}

/// Creates a bucket with a plain HTTP PUT (moto accepts unsigned requests).
fn create_bucket(endpoint: &str, bucket: &str) {
    let host = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the S3 server");
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "create bucket: {response}"
    );
}

fn store(endpoint: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap(),
    )
}

async fn upload_dir(store: &dyn ObjectStore, dir: &Path, prefix: &str) -> usize {
    let mut n = 0;
    for (rel, bytes) in crate::util::tree(dir) {
        store
            .put(
                &ObjectPath::from(format!("{prefix}/{rel}")),
                PutPayload::from(bytes),
            )
            .await
            .unwrap();
        n += 1;
    }
    n
}

/// Every object path under a prefix.
async fn list(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    store
        .list(Some(&ObjectPath::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn nightly_job_with_sources_and_lake_on_s3() {
    let endpoint = endpoint();
    let bucket = format!("crmflow-{}", std::process::id());
    create_bucket(&endpoint, &bucket);
    let s3 = store(&endpoint, &bucket);
    assert!(upload_dir(s3.as_ref(), &repo().join("data/sample"), "exports").await > 10);

    let options = format!(
        "{{ aws_endpoint = \"{endpoint}\", aws_allow_http = \"true\", aws_region = \"us-east-1\", aws_access_key_id = \"test\", aws_secret_access_key = \"test\" }}"
    );
    let local = std::fs::read_to_string(repo().join("jobs/nightly.toml")).unwrap();
    let mut job = String::new();
    for line in local.lines() {
        if line.starts_with("lake = ") {
            job.push_str(&format!(
                "lake = \"s3://{bucket}/lake\"\nstorage_options = {options}\n"
            ));
        } else if let Some(rest) = line.strip_prefix("location = \"../data/sample/") {
            job.push_str(&format!(
                "location = \"s3://{bucket}/exports/{rest}\nstorage_options = {options}\n"
            ));
        } else if line.starts_with("dir = ") {
            job.push_str(&format!("dir = \"{}\"\n", repo().join("sql").display()));
        } else {
            job.push_str(line);
            job.push('\n');
        }
    }
    job.push_str(&format!(
        "\n[[destinations]]\nname = \"feeds\"\nkind = \"files\"\nlocation = \"s3://{bucket}/feeds\"\nstorage_options = {options}\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let job_path = dir.path().join("s3.toml");
    std::fs::write(&job_path, job).unwrap();

    let out = run(
        &["run", job_path.to_str().unwrap(), "--as-of", "2026-11-20"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));

    // Tables, quarantine and the run record are in the bucket; the lease was released.
    let listed = list(s3.as_ref(), "lake").await;
    for expected in [
        "lake/marts/rfm/part-0.parquet",
        "lake/raw/metrica_visits/dt=2026-11-20/metrica.parquet",
    ] {
        assert!(
            listed.iter().any(|p| p == expected),
            "{expected} not in the bucket"
        );
    }
    assert!(
        listed
            .iter()
            .any(|p| p.starts_with("lake/quarantine/shopify/dt=2026-11-20/"))
    );
    assert!(listed.iter().any(|p| p.starts_with("lake/_runs/")));
    // Feeds: committed in the lake's history and delivered to the S3 destination, each
    // with a create-only manifest.
    assert!(listed.iter().any(
        |p| p.starts_with("lake/publish/cross_sell/email/2026-11-20/")
            && p.ends_with("/_manifest.json")
    ));
    let feeds = list(s3.as_ref(), "feeds").await;
    let manifests = feeds
        .iter()
        .filter(|p| p.ends_with("/_manifest.json"))
        .count();
    assert_eq!(manifests, 9, "one manifest per feed: {feeds:?}");
    assert!(feeds.iter().any(
        |p| p.starts_with("feeds/best_customers_ads/ads/2026-11-20/")
            && p.ends_with("/audience_sha256.csv")
    ));
    assert!(
        !listed.iter().any(|p| p.starts_with("lake/_leases/")),
        "lease not released"
    );

    // The same marts as the local run: compare with the golden RFM file.
    let out = run(
        &[
            "query",
            "--job",
            job_path.to_str().unwrap(),
            "--format",
            "csv",
            "SELECT count(*) AS n FROM rfm",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let golden_rows = std::fs::read_to_string(repo().join("tests/golden/rfm.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("n\n{golden_rows}")
    );

    // A held lease on S3 refuses a second run (create-only put).
    let holder = serde_json::json!({
        "job": "nightly", "run_id": "held-elsewhere", "host": "another-host",
        "pid": 1, "started_at": "2099-01-01T00:00:00Z",
    });
    s3.put(
        &ObjectPath::from("lake/_leases/nightly.json"),
        PutPayload::from(holder.to_string().into_bytes()),
    )
    .await
    .unwrap();
    let out = run(
        &[
            "run",
            job_path.to_str().unwrap(),
            "--as-of",
            "2026-11-20",
            "--stage",
            "ingest",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("held-elsewhere") && text(&out).contains("another-host"),
        "{}",
        text(&out)
    );
}
