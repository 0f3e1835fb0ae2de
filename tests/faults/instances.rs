//! The shopstream instances under test: real child processes (they must die), each with a
//! data dir that outlives it, so that a restart after kill -9 or SIGTERM resumes from its
//! store. Instance 0 keeps its data dir on a small tmpfs of its own, which the disk faults
//! fill up.
//!
//! Clients find the instances through [`Addresses`], which a restart updates (a restarted
//! instance listens on a new port) and a kill empties.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::support::{self, Server, http};

/// Where the instances listen right now (`None` while one is down).
#[derive(Clone, Default)]
pub struct Addresses(Arc<RwLock<Vec<Option<SocketAddr>>>>);

impl Addresses {
    pub fn get(&self, i: usize) -> Option<SocketAddr> {
        self.0.read().unwrap().get(i).copied().flatten()
    }

    pub fn count(&self) -> usize {
        self.0.read().unwrap().len()
    }

    fn set(&self, i: usize, addr: Option<SocketAddr>) {
        let mut all = self.0.write().unwrap();
        if all.len() <= i {
            all.resize(i + 1, None);
        }
        all[i] = addr;
    }
}

/// A small tmpfs (root only: `mount -t tmpfs`), unmounted when dropped.
pub struct SmallDisk {
    pub dir: PathBuf,
}

impl SmallDisk {
    pub fn mount(megabytes: u32) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(support::unique_name("campaign-disk"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(Self { dir })
        } else {
            let _ = std::fs::remove_dir(&dir);
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }
}

/// Writes zeros into `dir` until its disk is full; the filler file.
pub fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 256 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while file.write_all(&small).is_ok() {}
    let _ = file.sync_all();
    path
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Instances {
    binary: PathBuf,
    bootstrap: String,
    prefix: String,
    servers: Vec<Option<Server>>,
    data_dirs: Vec<PathBuf>,
    pub addresses: Addresses,
    /// Exits after SIGTERM that were not clean, or took longer than Docker's 10 s grace.
    pub unclean_shutdowns: Vec<String>,
    pub restarts: usize,
}

impl Instances {
    pub fn new(
        binary: PathBuf,
        bootstrap: String,
        prefix: String,
        data_dirs: Vec<PathBuf>,
    ) -> Self {
        Self {
            binary,
            bootstrap,
            prefix,
            servers: data_dirs.iter().map(|_| None).collect(),
            data_dirs,
            addresses: Addresses::default(),
            unclean_shutdowns: Vec::new(),
            restarts: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.data_dirs.len()
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.servers[i].is_some()
    }

    /// Starts instance `i` on its data dir and waits until it listens.
    pub fn start(&mut self, i: usize) {
        assert!(self.servers[i].is_none(), "instance {i} runs already");
        let mut command = Command::new(&self.binary);
        command
            .args(["--kafka", &self.bootstrap, "--listen", "127.0.0.1:0"])
            .args(["--log-format", "json", "--topic-prefix", &self.prefix])
            .args(["--replication-factor", "3", "--partitions", "3"])
            .arg("--data-dir")
            .arg(&self.data_dirs[i])
            // rskafka's retries log at info: a campaign would keep megabytes of them. To study
            // a failover, SHOPSTREAM_FAULT_RUST_LOG (with SHOPSTREAM_TEST_LOG_DIR) says more.
            .env(
                "RUST_LOG",
                std::env::var("SHOPSTREAM_FAULT_RUST_LOG")
                    .unwrap_or_else(|_| "info,rskafka=warn".to_string()),
            );
        // The data dir outlives the process: Server::spawn removes its "cleanup" path when
        // dropped, so it gets an empty one of its own.
        let server = Server::spawn(command, PathBuf::new(), Duration::from_secs(60));
        self.addresses.set(i, Some(server.addr));
        self.servers[i] = Some(server);
    }

    /// kill -9: no chance to save anything.
    pub fn kill9(&mut self, i: usize) {
        self.addresses.set(i, None);
        if let Some(server) = self.servers[i].take() {
            server.kill_hard();
        }
    }

    /// SIGTERM under load; a shutdown that fails or takes longer than 10 s is recorded.
    pub fn sigterm(&mut self, i: usize) -> Duration {
        self.addresses.set(i, None);
        let Some(mut server) = self.servers[i].take() else {
            return Duration::ZERO;
        };
        let started = Instant::now();
        let status = server.terminate(Duration::from_secs(30));
        let took = started.elapsed();
        if !status.success() || took > Duration::from_secs(10) {
            self.unclean_shutdowns.push(format!(
                "instance {i}: SIGTERM ended with {status} after {took:?}; its last log lines:\n{}",
                tail(&server.logs(), 20)
            ));
        }
        server.into_data_dir();
        took
    }

    pub fn restart(&mut self, i: usize) {
        self.restarts += 1;
        self.start(i);
    }

    /// Waits until instance `i` answers `/readyz` 200 (bounded); false when it did not.
    pub async fn wait_ready(&self, i: usize, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(addr) = self.addresses.get(i)
                && let Ok((200, _)) = http::get(addr, "/readyz").await
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub fn logs(&self, i: usize) -> String {
        self.servers[i]
            .as_ref()
            .map(|s| s.logs())
            .unwrap_or_default()
    }

    /// Whether a running instance's process ended by itself (a crash).
    pub fn exited(&mut self, i: usize) -> Option<String> {
        let server = self.servers[i].as_mut()?;
        let status = server.exit_status()?;
        Some(format!(
            "instance {i} exited by itself ({status}); its last log lines:\n{}",
            tail(&server.logs(), 30)
        ))
    }

    /// Stops every instance with SIGTERM (before the data dirs go away).
    pub fn stop_all(&mut self) {
        for i in 0..self.len() {
            if self.servers[i].is_some() {
                self.sigterm(i);
            }
        }
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        for server in self.servers.iter_mut() {
            if let Some(server) = server.take() {
                server.kill_hard();
            }
        }
        for dir in &self.data_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
