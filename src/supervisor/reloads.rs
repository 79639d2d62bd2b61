//! What the supervisor's loop applies while serving, besides the workers:
//! the configuration file reloaded (`-c`, SIGHUP), the TLS listener's
//! certificates reloaded, and backend names followed through DNS, all
//! published through the same path (`reload::publish_change`).
#![forbid(unsafe_code)]

use super::{list, Control, Supervisor, PUBLISH_WAIT_MS};
use crate::dns_shared::DnsShared;
use crate::log;
use crate::net::tls_listener::ListenerTls;
use crate::notify;
use crate::reload::publish_change;
use crate::sys::{self, Signal};
use std::sync::atomic::Ordering::Relaxed;

impl Supervisor {
    /// SIGHUP or a changed certificate or key file: the TLS listener's
    /// certificates are loaded anew; if they load, the generation moves and
    /// every worker loads them for its new handshakes; if not, the old ones
    /// stay and the log names the file.
    pub(super) fn reload_certificates_if_due(&self, ctl: &mut Control, hup: bool) {
        let (Some(t), Some(shared)) = (
            self.cfg.tls_listener.as_ref(),
            crate::tls_shared::TlsShared::current(),
        ) else {
            return;
        };
        // Every watch is asked (each keeps its own state).
        let changed = ctl
            .cert_watch
            .iter_mut()
            .fold(false, |any, w| w.changed() | any);
        if !(changed || hup) || ctl.draining {
            return;
        }
        let loaded = crate::net::tls_listener::read_files(&t.certificates).and_then(|pems| {
            let l = ListenerTls::from_pem(&pems, true)?;
            shared.publish_certs(&crate::net::tls_listener::fields(&pems))?;
            Ok(l)
        });
        match loaded {
            Ok(l) => {
                shared.cert_reloads_ok.fetch_add(1, Relaxed);
                let gen = shared.cert_generation.fetch_add(1, Relaxed) + 1;
                let names: Vec<String> = l
                    .certs
                    .certs
                    .iter()
                    .map(|c| c.names.first().cloned().unwrap_or_else(|| "?".into()))
                    .collect();
                log!(
                    Info,
                    "tls",
                    "TLS listener: certificates reloaded ({}; generation {gen}); new handshakes use them",
                    names.join(", ")
                );
            }
            Err(e) => {
                shared.cert_reloads_failed.fetch_add(1, Relaxed);
                log!(
                    Err,
                    "tls",
                    "TLS listener: certificate reload failed: {e}; keeping the certificates loaded before"
                );
            }
        }
    }

    pub(super) fn reload_if_due(&self, ctl: &mut Control) {
        let hup = sys::take_signal(Signal::Reload);
        self.reload_certificates_if_due(ctl, hup);
        let Some(r) = ctl.reloader.as_mut() else {
            if hup && self.cfg.tls_listener.is_none() {
                log!(
                    Info,
                    "reload",
                    "SIGHUP: no configuration file (-c) to reload; nothing changed"
                );
            }
            return;
        };
        if !(r.changed() || hup) || ctl.draining {
            return;
        }
        if !self.owns() {
            // A successor before its hand-over: it publishes the file as it
            // is then (`took_over`).
            log!(
                Info,
                "reload",
                "{}: changed; applied once this process takes over",
                r.path().display()
            );
            return;
        }
        let p = &self.region.process;
        notify::reloading();
        let path = r.path().display().to_string();
        let result = r.load();
        match result {
            Ok(d) => {
                // Counted as a success once published (`follow_dns`).
                ctl.discovery.begin_change();
                ctl.discovery.set_specs(&d.specs, &self.cfg.resolvers);
                let before = std::mem::replace(&mut ctl.desired, d);
                ctl.reload_before.get_or_insert(before);
                // Published at once when every backend name is known, else
                // as soon as the new names have answered (or failed).
                ctl.publish_due = Some(path);
                ctl.publish_due_since = sys::now_ms();
                // READY=1 once published or refused (`follow_dns`), so that
                // `systemctl reload` returns when the reload is in force.
                self.follow_dns(ctl);
            }
            Err(e) => {
                p.reloads_failed.fetch_add(1, Relaxed);
                log!(
                    Err,
                    "reload",
                    "{e}; keeping generation {}",
                    self.region.generation()
                );
                if ctl.reload_before.is_none() {
                    // Else an earlier reload is still waiting to publish:
                    // READY=1 comes when it is in force (or refused).
                    notify::sd_notify("READY=1");
                }
            }
        }
    }

    /// Backend names followed through DNS: answers taken in (never
    /// blocking), and the backend set published (as a reload would) when
    /// what they make changed, a reload or hand-over is due, or an SRV
    /// name's priority group went down. Only the region's owner publishes.
    pub(super) fn follow_dns(&self, ctl: &mut Control) {
        let now = sys::now_ms();
        let changed = ctl.discovery.tick(now);
        if changed || now >= ctl.dns_status_at {
            if let Some(d) = DnsShared::current() {
                d.publish(&ctl.discovery);
            }
            ctl.dns_status_at = now + 1000;
        }
        if !self.owns() || ctl.draining {
            return;
        }
        let settled = ctl.discovery.settled();
        let waited = now.saturating_sub(ctl.publish_due_since);
        if !settled && (ctl.publish_due.is_none() || waited < PUBLISH_WAIT_MS) {
            // A name's first lookup is still out: a reload (or a hand-over)
            // waits for it a moment, so that a name replacing another
            // never publishes an empty set.
            return;
        }
        let mut live = Vec::new();
        self.region.read_backends(&mut live);
        let health = &self.region.health;
        let down = |host: &str, addr: std::net::SocketAddr| {
            live.iter().any(|e| {
                e.addr() == addr
                    && e.host().eq_ignore_ascii_case(host)
                    && !health.is_healthy(e.id as usize)
            })
        };
        let entries = ctl.discovery.entries(&down);
        let ids: Vec<(String, std::net::SocketAddr, u16)> = entries
            .iter()
            .map(|e| (e.host().to_string(), e.addr(), e.weight))
            .collect();
        // A reload or hand-over that would publish no backend while some
        // serve: never. Names still out (a slow or lost answer) are waited
        // for until they answer or fail, however long the resolver takes;
        // then, if none resolved, a reload is refused whole (as nginx
        // refuses an upstream whose host is not found) and what it
        // replaced is restored, and a hand-over keeps the set it was
        // handed until its names resolve.
        let starving = ctl.publish_due.is_some() && entries.is_empty() && !live.is_empty();
        if starving && !settled {
            return;
        }
        if starving {
            let why = ctl.publish_due.take().unwrap_or_default();
            let unresolved = ctl.discovery.unresolved().join("; ");
            let generation = self.region.generation();
            match ctl.reload_before.take() {
                Some(before) => {
                    ctl.desired = before;
                    ctl.discovery.give_up_change(now);
                    self.region.process.reloads_failed.fetch_add(1, Relaxed);
                    notify::sd_notify("READY=1");
                    log!(
                        Err,
                        "reload",
                        "{why}: no backend of the new configuration resolved ({unresolved}); keeping generation {generation} and its backends"
                    );
                }
                None => log!(
                    Err,
                    "reload",
                    "{why}: no backend resolved yet ({unresolved}); keeping generation {generation} and its backends until one does"
                ),
            }
            return;
        }
        if !settled {
            log!(
                Warn,
                "dns",
                "publishing without the names that have not answered in {PUBLISH_WAIT_MS} ms: {}",
                ctl.discovery.unresolved().join("; ")
            );
        }
        if ctl.publish_due.is_none() && ids == ctl.published {
            return;
        }
        let d = &ctl.desired;
        let why = ctl.publish_due.take().unwrap_or_else(|| "dns".into());
        let reload = ctl.reload_before.take().is_some();
        match publish_change(
            self.region,
            entries,
            d.strategy,
            &d.health,
            d.runtime.as_ref(),
        ) {
            Ok(a) => {
                ctl.published = ids;
                ctl.discovery.keep_change();
                if reload {
                    self.region.process.reloads_ok.fetch_add(1, Relaxed);
                    notify::sd_notify("READY=1");
                }
                log!(
                    Info,
                    "reload",
                    "{why}: generation {}: backends {} (added: {}; removed: {}), strategy {}",
                    a.generation,
                    if a.backends.is_empty() {
                        "none".to_string()
                    } else {
                        a.backends.join(", ")
                    },
                    list(&a.added),
                    list(&a.removed),
                    a.strategy
                );
            }
            Err(e) => {
                ctl.discovery.keep_change();
                if reload {
                    self.region.process.reloads_failed.fetch_add(1, Relaxed);
                    notify::sd_notify("READY=1");
                }
                log!(Err, "reload", "{why}: {e}");
            }
        }
    }
}
