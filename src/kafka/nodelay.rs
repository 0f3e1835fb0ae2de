//! `TCP_NODELAY` on the broker connections.
//!
//! rskafka 0.6 opens its sockets itself (`TcpStream::connect`) and sets no option on them, so a
//! small produce request that follows another one on the same connection waits for the
//! broker's delayed ACK (Nagle's algorithm meeting delayed acknowledgements): with more than a
//! few dozen writers, requests queue behind 40 ms pauses while the CPU idles. rskafka offers no
//! hook for socket options, so the option is set from outside, on the connected sockets.
//!
//! Linux lists a process's open files in `/proc/self/fd`. A [`sweep`] walks that list and, on
//! every TCP socket without the option, sets it through the descriptor with rustix (plain Linux
//! system calls, no C). It needs no bookkeeping of which socket is whose: the option is what
//! every TCP connection of shopstream wants (its HTTP side sets it on accepted sockets too),
//! setting it is idempotent, and a descriptor that is not a TCP socket refuses it harmlessly.
//! A descriptor closed (or reused) between the listing and the call is equally harmless: the
//! call fails, or sets the option on another TCP socket of ours.
//!
//! Sweeps run after every new Kafka client or partition client (rskafka connects to the leader
//! while it builds one) and every tenth broker probe (on a blocking thread), which catches a
//! connection rskafka reopened inside a call. `BorrowedFd::borrow_raw` asks that the descriptor
//! stay open while borrowed, which another thread may break; what that can do is said above,
//! and nothing here reads or writes through the descriptor or closes it. Where `/proc` is missing (a chroot without it), a sweep finds nothing and
//! the connections stay as rskafka made them; that is logged once.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Sockets switched to `TCP_NODELAY` since start.
static SWITCHED: AtomicU64 = AtomicU64::new(0);
/// Whether a missing `/proc/self/fd` was already reported.
static REPORTED: AtomicBool = AtomicBool::new(false);

/// Sets `TCP_NODELAY` on every TCP socket of this process that lacks it; returns how many.
pub fn sweep() -> usize {
    let entries = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries,
        Err(error) => {
            if !REPORTED.swap(true, Ordering::Relaxed) {
                tracing::warn!(%error, "cannot list open sockets in /proc/self/fd: broker connections keep Nagle's algorithm");
            }
            return 0;
        }
    };
    let mut switched = 0;
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<RawFd>().ok())
        else {
            continue;
        };
        if switch_on(fd) {
            switched += 1;
        }
    }
    if switched > 0 {
        SWITCHED.fetch_add(switched as u64, Ordering::Relaxed);
        tracing::debug!(switched, "TCP_NODELAY set on new connections");
    }
    switched
}

/// Sockets switched to `TCP_NODELAY` since start (for `/metrics`).
pub fn switched_total() -> u64 {
    SWITCHED.load(Ordering::Relaxed)
}

/// The TCP connections of this process to a peer on `port` (a broker), each with whether
/// `TCP_NODELAY` is on: what an operator (or a test) checks the sweeps by.
pub fn connections_to(port: u16) -> Vec<(std::net::SocketAddr, bool)> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<RawFd>().ok())
        .filter_map(|fd| {
            // SAFETY: as in `switch_on`: only read through, never closed; a descriptor closed
            // or reused meanwhile gives an error or another socket of ours.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let peer = std::net::SocketAddr::try_from(rustix::net::getpeername(fd).ok()??).ok()?;
            let nodelay = rustix::net::sockopt::tcp_nodelay(fd).ok()?;
            (peer.port() == port).then_some((peer, nodelay))
        })
        .collect()
}

/// Sets the option on `fd` if it is a TCP socket without it.
fn switch_on(fd: RawFd) -> bool {
    // SAFETY: the descriptor is only used for the two socket-option calls below and never
    // closed here. If it was closed meanwhile the calls fail with EBADF; if its number was
    // reused, they act on that other descriptor, which is harmless (see the module doc).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    match rustix::net::sockopt::tcp_nodelay(fd) {
        // A TCP socket with Nagle's algorithm on.
        Ok(false) => rustix::net::sockopt::set_tcp_nodelay(fd, true).is_ok(),
        // Already on, or not a TCP socket (a file, a pipe, a Unix socket, epoll...).
        Ok(true) | Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_sweep_switches_connected_tcp_sockets_once_and_leaves_other_files_alone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(!client.nodelay().unwrap());
        assert!(!accepted.nodelay().unwrap());

        assert!(sweep() >= 2);
        assert!(client.nodelay().unwrap());
        assert!(accepted.nodelay().unwrap());
        // The plain file is no socket: the option call failed and nothing happened to it.
        assert!(rustix::net::sockopt::tcp_nodelay(file.as_fd()).is_err());
        // Nothing left to switch among these.
        assert!(!switch_on(std::os::fd::AsRawFd::as_raw_fd(&client)));
        assert!(switched_total() >= 2);
    }
}
