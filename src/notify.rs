//! systemd's readiness protocol (`sd_notify`), in a few lines of std: under `Type=notify`
//! systemd passes a datagram socket in `NOTIFY_SOCKET` and holds the unit in "activating" until
//! the service sends `READY=1` there. shopstream sends it once the replay of the log at start is
//! over (units ordered after it then find a read model that is caught up), `STATUS=` lines
//! while it catches up (shown by `systemctl status`), and `STOPPING=1` when it begins to stop.
//!
//! No crate and no C: a `NOTIFY_SOCKET` is a path, or an abstract socket name written with a
//! leading `@`. The socket is non-blocking, so a stalled systemd can never hold a task up; a
//! message that cannot be sent is logged and dropped (systemd's own `sd_notify` does the same).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where systemd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    /// Linux's abstract namespace (`@name` in `NOTIFY_SOCKET`).
    Abstract(Vec<u8>),
}

/// A handle on systemd's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: Target,
    /// Set after the first failed send: later ones are logged at debug only.
    failed: AtomicBool,
}

impl Notifier {
    /// The notifier systemd asked for through `NOTIFY_SOCKET`; `None` when not started by
    /// systemd with `Type=notify` (or when the variable names nothing usable).
    pub fn from_env() -> Option<Self> {
        Self::new(&std::env::var_os("NOTIFY_SOCKET")?)
    }

    /// A notifier for the socket `address` (`/run/...` or `@abstract`).
    pub fn new(address: &OsStr) -> Option<Self> {
        let bytes = address.as_bytes();
        let target = match bytes.first()? {
            b'/' => Target::Path(PathBuf::from(address)),
            b'@' if bytes.len() > 1 => Target::Abstract(bytes[1..].to_vec()),
            _ => {
                tracing::warn!(
                    socket = %address.to_string_lossy(),
                    "NOTIFY_SOCKET is neither a path nor an abstract socket; not notifying systemd"
                );
                return None;
            }
        };
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .inspect_err(|error| tracing::warn!(%error, "cannot open a socket to notify systemd"))
            .ok()?;
        Some(Self {
            socket,
            target,
            failed: AtomicBool::new(false),
        })
    }

    /// Sends `KEY=value` assignments in one datagram, as systemd reads them.
    pub fn send(&self, assignments: &[(&str, &str)]) {
        let message: String = assignments
            .iter()
            .map(|(key, value)| format!("{key}={}\n", one_line(value)))
            .collect();
        if let Err(error) = self.send_raw(message.as_bytes()) {
            if self.failed.swap(true, Ordering::Relaxed) {
                tracing::debug!(%error, "cannot notify systemd");
            } else {
                tracing::warn!(%error, target = ?self.target, "cannot notify systemd");
            }
        }
    }

    fn send_raw(&self, message: &[u8]) -> std::io::Result<usize> {
        match &self.target {
            Target::Path(path) => self.socket.send_to(message, path),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.socket.send_to_addr(message, &addr)
            }
        }
    }

    /// What the service is doing, for `systemctl status`; `extend`: the start may take this
    /// much longer than `TimeoutStartSec` from now (the replay is making progress).
    pub fn status(&self, status: &str, extend: Option<Duration>) {
        match extend {
            Some(extend) => {
                let micros = extend.as_micros().to_string();
                self.send(&[("STATUS", status), ("EXTEND_TIMEOUT_USEC", &micros)]);
            }
            None => self.send(&[("STATUS", status)]),
        }
    }

    /// Started and caught up: systemd moves the unit to "active".
    pub fn ready(&self, status: &str) {
        self.send(&[("READY", "1"), ("STATUS", status)]);
    }

    /// Shutting down (a signal): systemd shows the unit as "deactivating".
    pub fn stopping(&self, status: &str) {
        self.send(&[("STOPPING", "1"), ("STATUS", status)]);
    }
}

/// systemd reads one assignment a line.
fn one_line(value: &str) -> String {
    value.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn messages_reach_a_socket_named_by_path_one_datagram_each() {
        let dir = std::env::temp_dir().join(format!("notify-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::new(path.as_os_str()).unwrap();
        notifier.status("catching up\nwith the log", Some(Duration::from_secs(15)));
        assert_eq!(
            received(&listener),
            "STATUS=catching up with the log\nEXTEND_TIMEOUT_USEC=15000000\n"
        );
        notifier.ready("caught up");
        assert_eq!(received(&listener), "READY=1\nSTATUS=caught up\n");
        notifier.stopping("stopping");
        assert_eq!(received(&listener), "STOPPING=1\nSTATUS=stopping\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn abstract_sockets_are_reached_too_and_nonsense_is_refused() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("shopstream-test-{}", uuid::Uuid::new_v4().simple());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::new(OsStr::new(&format!("@{name}"))).unwrap();
        notifier.ready("ok");
        assert_eq!(received(&listener), "READY=1\nSTATUS=ok\n");
        assert!(Notifier::new(OsStr::new("relative/path")).is_none());
        assert!(Notifier::new(OsStr::new("")).is_none());
        assert!(Notifier::new(OsStr::new("@")).is_none());
    }

    #[test]
    fn a_socket_nobody_listens_on_costs_nothing() {
        let notifier = Notifier::new(OsStr::new("/nonexistent/notify.sock")).unwrap();
        notifier.ready("nobody hears this");
        notifier.ready("nor this");
        assert!(notifier.failed.load(Ordering::Relaxed));
    }
}
