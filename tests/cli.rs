//! The binary's command line: every error exits 2 and names the flag.

mod common;
use common::*;

#[test]
fn every_cli_error_exits_2_and_names_the_flag() {
    let long_host = format!("{}:80", "a".repeat(254));
    let many: Vec<String> = (0..65)
        .flat_map(|i| ["-b".to_string(), format!("127.0.0.1:{}", 10000 + i)])
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let b = ["-b", "127.0.0.1:9001"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--bogus"], "--bogus"),
        (vec!["-x"], "-x"),
        (vec!["-b", "127.0.0.1:9001", "-p"], "-p"),
        (vec!["-p", "70000", "-b", "127.0.0.1:9001"], "70000"),
        (vec!["-p", "0", "-b", "127.0.0.1:9001"], "-p"),
        (vec!["--port=abc", "-b", "127.0.0.1:9001"], "abc"),
        (vec!["-b", "localhost"], "localhost"),
        (vec!["-b", &long_host], "-b"),
        (many.clone(), "64"),
        ([&b[..], &["-s", "fastest"]].concat(), "fastest"),
        ([&b[..], &["-l", "verbose"]].concat(), "verbose"),
        ([&b[..], &["-m", "fork"]].concat(), "fork"),
        ([&b[..], &["-w", "65"]].concat(), "0..=64"),
        (
            [&b[..], &["--ca-file", "/nonexistent/ca.pem"]].concat(),
            "--ca-file",
        ),
        ([&b[..], &["--admin", "nowhere"]].concat(), "--admin"),
        ([&b[..], &["--access-log="]].concat(), "--access-log"),
        (vec![], "no backends"),
        (vec!["-c", "/nonexistent/lb.json"], "/nonexistent/lb.json"),
    ];
    for (args, want) in cases {
        let (code, _, err) = run_lb(&args);
        assert_eq!(code, 2, "{args:?} exited {code}: {err}");
        assert!(
            err.contains(want),
            "{args:?}: {err:?} does not mention {want:?}"
        );
    }
}

#[test]
fn config_file_errors_give_file_line_and_column() {
    let path = temp_file(
        "bad.json",
        "{\"backends\": [\n  {\"host\": \"127.0.0.1\", \"port\": 70000}\n]}\n",
    );
    let (code, _, err) = run_lb(&["-c", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.json:2:"), "{err}");
    assert!(err.contains("70000"), "{err}");
    let path = temp_file(
        "syntax.json",
        "{\"backends\": [\n  {\"host\": \"a\" \"port\": 1}\n]}",
    );
    let (code, _, err) = run_lb(&["-c", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("syntax.json:2:"), "{err}");
}

#[test]
fn help_version_and_check() {
    let (code, out, _) = run_lb(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--mode",
        "--workers",
        "--port",
        "--host",
        "--backend",
        "--strategy",
        "--config",
        "--loglevel",
        "--insecure",
        "--trace",
        "--tls-trace",
        "--check",
        "--version",
    ] {
        assert!(out.contains(flag), "--help does not list {flag}");
    }
    let (code, out, _) = run_lb(&["--version"]);
    assert_eq!((code, out.starts_with("load_balancer ")), (0, true));
    let (code, out, err) = run_lb(&["--check", "-b", "127.0.0.1:9001", "-b", "localhost:9002"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"), "{out}");
    // A name that does not resolve is warned about, not refused: the load
    // balancer would start and follow it (issue 16).
    let (code, out, err) = run_lb(&["--check", "-b", "no-such-host.invalid:80"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"), "{out}");
    assert!(
        err.contains("warning: backend no-such-host.invalid:80"),
        "{err}"
    );
    // An invalid name is still a configuration error.
    let (code, _, err) = run_lb(&["--check", "-b", "bad name:80"]);
    assert_eq!(code, 2, "{err}");
}

/// The same backend twice (flags, file, or one of each) is refused, naming
/// both places; so is a flag out of range for the new limits.
#[test]
fn duplicate_backends_are_refused_naming_both_places() {
    let (code, _, err) = run_lb(&["-b", "127.0.0.1:9001", "-b", "127.0.0.1:9001"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("listed twice") && err.contains("flag 1 of 2") && err.contains("flag 2 of 2"),
        "{err}"
    );
    let cfg = temp_file(
        "dup.json",
        "{\"backends\": [\n  {\"host\": \"a.test\", \"port\": 1},\n  {\"host\": \"A.TEST\", \"port\": 1}\n]}",
    );
    let (code, _, err) = run_lb(&["--check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("dup.json:2:3") && err.contains("dup.json:3:3"),
        "{err}"
    );
    let (code, _, err) = run_lb(&["-b", "a.test:1", "--check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("-b a.test:1") && err.contains("dup.json:2:3"),
        "{err}"
    );
    // Different TLS settings are different backends.
    let (code, _, err) = run_lb(&[
        "--check",
        "-b",
        "127.0.0.1:9443",
        "-b",
        "https://127.0.0.1:9443",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run_lb(&["-b", "127.0.0.1:9001", "--max-connections", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--max-connections"), "{err}");
}

/// A config path that is a FIFO is refused at once (opening it would block
/// until a writer came), with a message naming it.
#[test]
fn a_fifo_as_the_config_file_is_refused_not_waited_on() {
    let dir = temp_file("placeholder", "");
    let fifo = dir.parent().unwrap().join("lb.json");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(ok.success());
    let (code, _, err) = run_lb(&["--check", "-c", fifo.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("not a regular file") && err.contains("lb.json"),
        "{err}"
    );
}
