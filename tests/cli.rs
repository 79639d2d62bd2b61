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
    let (code, _, err) = run_lb(&["--check", "-b", "no-such-host.invalid:80"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no-such-host.invalid"), "{err}");
}
