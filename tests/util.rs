//! Helpers: run the built `crmflow` binary, copy the job into a temp folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn crmflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crmflow"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn run(args: &[&str], cwd: &Path) -> Output {
    crmflow()
        .args(args)
        .current_dir(cwd)
        .env("CRMFLOW_LOG", "warn")
        .output()
        .expect("run crmflow")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The bundled nightly job, rewritten to use `lake` and the repository's sample.
pub fn job_with_lake(dir: &Path, lake: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("jobs/nightly.toml")).expect("nightly.toml");
    let sample = repo().join("data/sample");
    let text = text
        .replace("../crmflow-demo/lake", &lake.display().to_string())
        .replace("../data/sample", &sample.display().to_string())
        .replace(
            "\"../sql\"",
            &format!("\"{}\"", repo().join("sql").display()),
        );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).expect("write job");
    path
}

/// Every file under a folder with its bytes, sorted by path.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap_or(&p).display().to_string(),
                    std::fs::read(&p).expect("read"),
                ));
            }
        }
    }
    out.sort();
    out
}
