//! The static binary (`make static`): statically linked, and serving an
//! HTTPS backend with nothing from the build machine.

mod common;

use common::tls::{Ca, TlsBackend};
use common::*;

const STATIC_BIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/static/load_balancer");

#[test]
#[ignore = "needs target/static/load_balancer from `make static` (musl-tools); `make test` runs it with --ignored once that binary exists"]
fn the_static_binary_is_statically_linked_and_serves_a_tls_backend() {
    assert!(
        std::path::Path::new(STATIC_BIN).exists(),
        "no {STATIC_BIN}: run `make static` first"
    );
    let out = std::process::Command::new("file")
        .arg(STATIC_BIN)
        .output()
        .expect("file(1) (apt-get install file)");
    let what = String::from_utf8_lossy(&out.stdout);
    assert!(
        what.contains("statically linked") || what.contains("static-pie linked"),
        "{what}"
    );
    let ca = Ca::new("lb test CA");
    let be = TlsBackend::http(ca.leaf(&["localhost"], false), |_| ok("static"));
    let ca_file = ca.pem_file("ca.pem");
    let lb = Lb::start_bin(
        STATIC_BIN,
        &["--ca-file", ca_file.to_str().unwrap(), "-b", &be.https()],
    );
    for _ in 0..4 {
        assert_eq!(get(lb.port, "/").text(), "static");
    }
    // And without --ca-file it trusts the system store (or webpki-roots):
    // a backend of a private CA is then refused.
    let strict = Lb::start_bin(STATIC_BIN, &["-b", &be.https()]);
    assert_eq!(get(strict.port, "/").status(), 502);
}
