//! Where dnsmasq is (Debian puts it in /usr/sbin, which a user's PATH may
//! lack); shared by the resolver and discovery tests.

use std::path::PathBuf;

/// The dnsmasq binary; a test that needs it fails saying how to install it.
pub fn dnsmasq_binary() -> PathBuf {
    let mut dirs: Vec<PathBuf> = ["/usr/sbin", "/usr/local/sbin", "/sbin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.iter()
        .map(|d| d.join("dnsmasq"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "dnsmasq not found (looked in {dirs:?}): the DNS resolver tests need it; \
                 apt-get install dnsmasq-base"
            )
        })
}
