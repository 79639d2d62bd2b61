//! The fuzz targets' checks on stable, as part of `make test`: every input
//! kept under tests/fuzz/regressions/<target>/ (each one failed a check
//! once) and the committed seeds under tests/fuzz/seeds/<target>/ go
//! through the same functions the fuzzer runs (tests/fuzz/checks.rs), and
//! so do the inputs made from the conformance corpora
//! (tests/conformance/), which `make fuzz` also writes as seeds.
//!
//! `write_seeds` (ignored) writes those conformance inputs into the fuzz
//! corpus dirs: `FUZZ_CORPUS=tests/fuzz/corpus cargo test --test
//! fuzz_regressions -- --ignored write_seeds` (what `make fuzz` does).

#[path = "fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

/// The files of `tests/fuzz/<kind>/<target>/`, sorted (none if it is absent).
fn kept(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, data)
        })
        .collect()
}

/// Runs `target`'s check on each input; fails naming every input that fails.
fn replay(target: &str, inputs: &[(String, Vec<u8>)]) {
    let mut failed = Vec::new();
    for (name, data) in inputs {
        let r = std::panic::catch_unwind(|| checks::check(target, data));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{name}: {msg}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs of `{target}` fail:\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
}

/// Replays the regressions and committed seeds of `target`.
fn replay_kept(target: &str) -> usize {
    let mut inputs = Vec::new();
    for kind in ["regressions", "seeds"] {
        for (path, data) in kept(kind, target) {
            inputs.push((path.display().to_string(), data));
        }
    }
    replay(target, &inputs);
    println!("{target}: {} kept inputs pass", inputs.len());
    inputs.len()
}

#[test]
fn head_regressions_and_seeds() {
    assert!(replay_kept("head") > 0, "no seeds for head");
}

#[test]
fn chunked_regressions_and_seeds() {
    assert!(replay_kept("chunked") > 0, "no seeds for chunked");
}

#[test]
fn json_regressions_and_seeds() {
    assert!(replay_kept("json") > 0, "no seeds for json");
}

#[test]
fn config_regressions_and_seeds() {
    assert!(replay_kept("config") > 0, "no seeds for config");
}

#[test]
fn dns_regressions_and_seeds() {
    assert!(replay_kept("dns") > 0, "no seeds for dns");
}

#[test]
fn cli_regressions_and_seeds() {
    assert!(replay_kept("cli") > 0, "no seeds for cli");
    checks::cli_cleanup();
}

// ------------------------------------------------- conformance inputs ---

/// One conformance corpus: its lines and the JSON of each.
fn corpus(name: &str) -> Vec<(String, lb::config::json::Json)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance")
        .join(name)
        .join("cases.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            (
                l.to_string(),
                lb::config::json::parse(l).expect("corpus line"),
            )
        })
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A file name from a case id.
fn file_name(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The inputs each target gets from the conformance corpora: every case's
/// bytes for `head`, the body after a chunked head for `chunked`, every
/// corpus line for `json`.
fn conformance_inputs() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in ["llhttp", "desync-guardian"] {
        for (line, case) in corpus(name) {
            let id = case.get("id").and_then(|v| v.as_str()).unwrap_or("case");
            let file = format!("conf-{name}-{}", file_name(id));
            let raw = unhex(case.get("raw_hex").unwrap().as_str().unwrap());
            out.push(("json", file.clone(), line.into_bytes()));
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                if head.contains("transfer-encoding") && head.contains("chunked") {
                    out.push(("chunked", file.clone(), raw[end + 4..].to_vec()));
                }
            }
            out.push(("head", file, raw));
        }
    }
    out
}

#[test]
fn conformance_inputs_pass_the_checks() {
    let inputs = conformance_inputs();
    for target in checks::TARGETS {
        let mine: Vec<(String, Vec<u8>)> = inputs
            .iter()
            .filter(|(t, _, _)| *t == target)
            .map(|(_, name, data)| (name.clone(), data.clone()))
            .collect();
        replay(target, &mine);
        println!("{target}: {} conformance inputs pass", mine.len());
    }
}

/// Writes the conformance inputs into `$FUZZ_CORPUS/<target>/` (for `make fuzz`).
#[test]
#[ignore = "writes seed files; run by make fuzz"]
fn write_seeds() {
    let root = PathBuf::from(std::env::var("FUZZ_CORPUS").expect("FUZZ_CORPUS=<corpus dir>"));
    let mut n = 0;
    for (target, name, data) in conformance_inputs() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
        n += 1;
    }
    println!("wrote {n} seeds under {}", root.display());
}
