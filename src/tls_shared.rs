//! What the TLS listener shares between workers, in one anonymous shared
//! mapping made by the supervisor before any worker starts (so forked
//! worker processes and worker threads see the same memory):
//!
//! - the **session cache**: rustls's server session store
//!   (`StoresServerSessions`) over fixed-size slots, so a client that
//!   resumes on another worker (another process in mp) still resumes. TLS
//!   1.3 tickets and TLS 1.2 session ids are only keys into it (rustls
//!   "stateful" resumption): no ticket key exists, so there is nothing to
//!   rotate or to share, and no cryptography here;
//! - the **certificate generation**: bumped by the supervisor when the
//!   certificate files changed and loaded; each worker reloads its
//!   certificates when it sees a new one;
//! - the listener's **counters** (handshakes, failures, certificate reloads).
//!
//! The cache is direct-mapped: a key's slot is a hash of it; a new session
//! overwrites whatever was there (a cache, not a store). Each slot has a
//! lock word that is only ever tried, never waited on: a busy slot makes a
//! `put` fail or a `get` miss (a full handshake), never a stall. A lock
//! held by a process that died is taken over after [`STALE_LOCK_MS`].
//!
//! The mapping is per load balancer process tree: a successor after an
//! upgrade starts an empty cache (clients do one full handshake again).

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

/// Session slots. At about 1.1 KB each, 8192 are 9 MB of address space,
/// touched only as sessions are stored (nginx's `shared:SSL:10m` holds
/// about 40,000 of its smaller sessions).
pub const SLOTS: usize = 8192;
/// Longest key kept: rustls's session ids and stateful tickets are 32 bytes.
pub const KEY_MAX: usize = 32;
/// Longest encoded session kept (a session with a 253-byte SNI name and an
/// ALPN protocol is about 400 bytes; a longer one is not cached).
pub const VALUE_MAX: usize = 1024;
/// Room for the listener's certificate and key files, all of them.
pub const CERT_BLOB_MAX: usize = 256 * 1024;

/// A slot lock older than this belongs to a process that died holding it.
pub const STALE_LOCK_MS: u32 = 1000;

/// Failure reasons counted for the listener's handshakes.
pub const FAILURE_REASONS: [&str; 6] = [
    "not_tls",
    "no_common_protocol",
    "alert",
    "protocol",
    "closed",
    "timeout",
];

#[repr(C, align(64))]
struct Slot {
    /// 0: free; else the low 32 bits of the lock time in ms (| 1).
    lock: AtomicU32,
    key_len: AtomicU32,
    value_len: AtomicU32,
    /// FNV-1a of key and value: an entry torn by a writer whose lock was
    /// taken over (it stalled past `STALE_LOCK_MS`) reads as a miss.
    sum: AtomicU32,
    key: [AtomicU8x; KEY_MAX],
    value: [AtomicU8x; VALUE_MAX],
}

/// A byte in shared memory (all access under the slot's lock; atomics so
/// no reference to shared bytes is ever a plain `&mut`).
#[repr(transparent)]
struct AtomicU8x(std::sync::atomic::AtomicU8);

/// The shared block (see the module documentation).
#[repr(C, align(64))]
pub struct TlsShared {
    /// Bumped by the supervisor after the certificate files loaded anew.
    pub cert_generation: AtomicU64,
    pub cert_reloads_ok: AtomicU64,
    pub cert_reloads_failed: AtomicU64,
    /// Completed listener handshakes: TLS 1.2, TLS 1.3.
    pub handshakes: [AtomicU64; 2],
    /// Of those, resumed ones.
    pub resumed: AtomicU64,
    /// Failed handshakes, by [`FAILURE_REASONS`].
    pub failures: [AtomicU64; FAILURE_REASONS.len()],
    /// The certificate and key files' bytes the supervisor last loaded
    /// (`publish_certs`), under a sequence number (odd while written).
    cert_seq: AtomicU64,
    cert_len: AtomicU32,
    cert_blob: [AtomicU8x; CERT_BLOB_MAX],
    /// Sessions stored, found, and missed (cache statistics).
    pub cache_stores: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    slots: [Slot; SLOTS],
}

// SAFETY: every field is an atomic.
unsafe impl Sync for TlsShared {}

static CURRENT: OnceLock<&'static TlsShared> = OnceLock::new();

impl TlsShared {
    /// Maps the block (zeroed: every slot free, every counter 0) and makes
    /// it this process's [`TlsShared::current`]. Called once, before
    /// workers start; never unmapped.
    pub fn create() -> std::io::Result<&'static TlsShared> {
        // SAFETY: every field is an atomic (zero is a valid value) and the
        // alignment is 64 bytes, less than a page.
        let shared: &'static TlsShared = unsafe { crate::sys::map_shared_zeroed()? };
        let _ = CURRENT.set(shared);
        Ok(shared)
    }

    /// The block of this process tree, once the supervisor made it.
    pub fn current() -> Option<&'static TlsShared> {
        CURRENT.get().copied()
    }

    /// The supervisor: the files' bytes it loaded, for the workers (each
    /// as a length-prefixed field: cert path, key path, cert, key, …).
    pub fn publish_certs(&self, fields: &[&[u8]]) -> Result<(), String> {
        let total: usize = fields.iter().map(|f| 4 + f.len()).sum();
        if total > CERT_BLOB_MAX {
            return Err(format!(
                "the certificate and key files are {total} bytes together, over {CERT_BLOB_MAX}"
            ));
        }
        self.cert_seq.fetch_add(1, Ordering::AcqRel);
        let mut at = 0;
        for f in fields {
            let len = (f.len() as u32).to_le_bytes();
            for &b in len.iter().chain(f.iter()) {
                self.cert_blob[at].0.store(b, Ordering::Relaxed);
                at += 1;
            }
        }
        self.cert_len.store(at as u32, Ordering::Relaxed);
        self.cert_seq.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// A worker: the fields as last published; `None` if none were, or a
    /// consistent copy could not be had now (tried again at the next sweep).
    pub fn certs(&self) -> Option<Vec<Vec<u8>>> {
        let s1 = self.cert_seq.load(Ordering::Acquire);
        if s1 == 0 || s1 % 2 == 1 {
            return None;
        }
        let len = (self.cert_len.load(Ordering::Relaxed) as usize).min(CERT_BLOB_MAX);
        let bytes: Vec<u8> = self.cert_blob[..len]
            .iter()
            .map(|b| b.0.load(Ordering::Relaxed))
            .collect();
        std::sync::atomic::fence(Ordering::Acquire);
        if self.cert_seq.load(Ordering::Relaxed) != s1 {
            return None;
        }
        let mut fields = Vec::new();
        let mut rest = &bytes[..];
        while rest.len() >= 4 {
            let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let field = rest.get(4..4 + n)?;
            fields.push(field.to_vec());
            rest = &rest[4 + n..];
        }
        Some(fields)
    }

    fn slot(&self, key: &[u8]) -> &Slot {
        // FNV-1a: keys are random bytes from rustls, but a client chooses
        // the session id it offers, so no key is trusted to be spread.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in key {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        &self.slots[(h % SLOTS as u64) as usize]
    }

    /// Stores `value` under `key`; false when it does not fit or the slot
    /// is busy.
    pub fn put(&self, key: &[u8], value: &[u8]) -> bool {
        if key.is_empty() || key.len() > KEY_MAX || value.len() > VALUE_MAX {
            return false;
        }
        let s = self.slot(key);
        let Some(_lock) = SlotLock::try_new(s) else {
            return false;
        };
        for (d, &b) in s.key.iter().zip(key) {
            d.0.store(b, Ordering::Relaxed);
        }
        for (d, &b) in s.value.iter().zip(value) {
            d.0.store(b, Ordering::Relaxed);
        }
        s.key_len.store(key.len() as u32, Ordering::Relaxed);
        s.value_len.store(value.len() as u32, Ordering::Relaxed);
        s.sum.store(checksum(key, value), Ordering::Relaxed);
        self.cache_stores.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The value under `key`; with `take`, the slot is emptied (a TLS 1.3
    /// ticket resumes one connection only).
    pub fn get(&self, key: &[u8], take: bool) -> Option<Vec<u8>> {
        let found = self.lookup(key, take);
        let counter = if found.is_some() {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn lookup(&self, key: &[u8], take: bool) -> Option<Vec<u8>> {
        if key.is_empty() || key.len() > KEY_MAX {
            return None;
        }
        let s = self.slot(key);
        let _lock = SlotLock::try_new(s)?;
        let klen = s.key_len.load(Ordering::Relaxed) as usize;
        if klen != key.len()
            || !s
                .key
                .iter()
                .zip(key)
                .all(|(a, &b)| a.0.load(Ordering::Relaxed) == b)
        {
            return None;
        }
        let vlen = (s.value_len.load(Ordering::Relaxed) as usize).min(VALUE_MAX);
        let value: Vec<u8> = s.value[..vlen]
            .iter()
            .map(|b| b.0.load(Ordering::Relaxed))
            .collect();
        if s.sum.load(Ordering::Relaxed) != checksum(key, &value) {
            return None;
        }
        if take {
            s.key_len.store(0, Ordering::Relaxed);
        }
        Some(value)
    }
}

fn checksum(key: &[u8], value: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in key.iter().chain(value) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// A slot's lock (and the stamp it was taken with), held until dropped.
struct SlotLock<'a>(&'a Slot, u32);

impl<'a> SlotLock<'a> {
    fn try_new(s: &'a Slot) -> Option<SlotLock<'a>> {
        let now = (crate::sys::now_ms() as u32) | 1;
        match s
            .lock
            .compare_exchange(0, now, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Some(SlotLock(s, now)),
            // Held since long ago: its holder died (a killed worker). The
            // age is signed: a lock taken a moment after `now` was read is
            // young, not four billion milliseconds old.
            Err(held) if (now.wrapping_sub(held) as i32) > STALE_LOCK_MS as i32 => s
                .lock
                .compare_exchange(held, now, Ordering::Acquire, Ordering::Relaxed)
                .ok()
                .map(|_| SlotLock(s, now)),
            Err(_) => None,
        }
    }
}

impl Drop for SlotLock<'_> {
    /// Releases the lock if it is still ours (a holder stalled past
    /// [`STALE_LOCK_MS`] does not release its successor's).
    fn drop(&mut self) {
        let _ = self
            .0
            .lock
            .compare_exchange(self.1, 0, Ordering::Release, Ordering::Relaxed);
    }
}

/// rustls's view of the cache.
#[cfg(feature = "tls")]
#[derive(Debug)]
pub struct SessionStore(pub &'static TlsShared);

impl std::fmt::Debug for TlsShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsShared({SLOTS} slots)")
    }
}

#[cfg(feature = "tls")]
impl rustls::server::StoresServerSessions for SessionStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.put(&key, &value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key, false)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key, true)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_once_taken_and_many_times_got() {
        let t = TlsShared::create().unwrap();
        let key = [7u8; 32];
        assert!(t.put(&key, b"session"));
        assert_eq!(t.get(&key, false).as_deref(), Some(&b"session"[..]));
        assert_eq!(t.get(&key, true).as_deref(), Some(&b"session"[..]));
        assert_eq!(t.get(&key, true), None);
        assert!(!t.put(&[1u8; 33], b"x"), "an over-long key is refused");
        assert!(
            !t.put(&key, &[0u8; VALUE_MAX + 1]),
            "an over-long value is refused"
        );
        assert_eq!(t.get(&[], false), None);
    }

    #[test]
    fn a_lock_left_by_a_dead_holder_is_taken_over_and_a_live_one_is_not_waited_on() {
        let t = TlsShared::create().unwrap();
        let key = [9u8; 32];
        let s = t.slot(&key);
        let now = (crate::sys::now_ms() as u32) | 1;
        s.lock.store(now, Ordering::Relaxed);
        assert!(!t.put(&key, b"v"), "a busy slot fails at once");
        s.lock.store(now.wrapping_add(5), Ordering::Relaxed);
        assert!(!t.put(&key, b"v"), "a lock taken just after `now` is young");
        s.lock
            .store(now.wrapping_sub(STALE_LOCK_MS + 10), Ordering::Relaxed);
        assert!(t.put(&key, b"v"), "a stale lock is taken over");
        assert_eq!(s.lock.load(Ordering::Relaxed), 0, "and released");
        // A torn entry (a value changed under a taken-over lock) is a miss.
        s.value[0].0.store(b'X', Ordering::Relaxed);
        assert_eq!(t.get(&key, false), None);
    }

    #[test]
    fn forked_processes_share_the_cache() {
        let t = TlsShared::create().unwrap();
        let key = [3u8; 32];
        let pid = crate::sys::fork().unwrap();
        if pid == 0 {
            t.put(&key, b"from the child");
            crate::sys::exit_now(0);
        }
        // SAFETY: waits for the child just forked; no pointer is passed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        assert_eq!(t.get(&key, false).as_deref(), Some(&b"from the child"[..]));
    }
}
