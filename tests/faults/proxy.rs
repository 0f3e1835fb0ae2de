//! Shopify's Toxiproxy between shopstream and the brokers: one proxy per broker, faults added
//! and removed through its HTTP API. The server binary comes from `TOXIPROXY_SERVER`, or from
//! `compose/toxiproxy`, which builds it once from the Go module proxy and caches it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{self, http};

pub struct Toxiproxy {
    child: Child,
    api: SocketAddr,
    log: PathBuf,
}

/// The toxiproxy-server binary: `TOXIPROXY_SERVER`, or the one `compose/toxiproxy` prints
/// (building it once when missing).
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("TOXIPROXY_SERVER")
        && !path.trim().is_empty()
    {
        return PathBuf::from(path.trim());
    }
    let output = Command::new(support::repo_root().join("compose/toxiproxy"))
        .stderr(Stdio::inherit())
        .output()
        .expect("compose/toxiproxy runs");
    assert!(
        output.status.success(),
        "no toxiproxy-server: compose/toxiproxy failed (it needs Go and the Go module proxy once)"
    );
    PathBuf::from(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim(),
    )
}

impl Toxiproxy {
    /// Starts the server on a free port, its log in `log`.
    pub async fn start(binary: &Path, log: &Path) -> Self {
        let port = support::free_port();
        let log_path = log.to_path_buf();
        let log = std::fs::File::create(log).expect("the proxy's log file");
        let child = Command::new(binary)
            .args(["-host", "127.0.0.1", "-port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let proxy = Self {
            child,
            api,
            log: log_path,
        };
        support::eventually("toxiproxy answers", Duration::from_secs(30), || async {
            match http::get(api, "/version").await {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        proxy
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let reply = http::exchange(
            self.api,
            method,
            path,
            &[("content-type", "application/json")],
            if body.is_null() {
                String::new()
            } else {
                body.to_string()
            },
        )
        .await?;
        if (200..300).contains(&reply.status) {
            Ok(reply.json)
        } else {
            Err(format!(
                "toxiproxy {method} {path}: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.raw)
            ))
        }
    }

    /// A proxy `name` from `127.0.0.1:listen` to `127.0.0.1:upstream`.
    pub async fn create(&self, name: &str, listen: u16, upstream: u16) {
        self.call(
            "POST",
            "/proxies",
            json!({
                "name": name,
                "listen": format!("127.0.0.1:{listen}"),
                "upstream": format!("127.0.0.1:{upstream}"),
                "enabled": true,
            }),
        )
        .await
        .unwrap();
    }

    /// Adds a toxic to proxy `name` in both directions (`<toxic>-up` and `<toxic>-down`).
    pub async fn add_toxic(&self, name: &str, kind: &str, attributes: Value) {
        for stream in ["upstream", "downstream"] {
            self.call(
                "POST",
                &format!("/proxies/{name}/toxics"),
                json!({
                    "name": format!("{kind}-{stream}"),
                    "type": kind,
                    "stream": stream,
                    "toxicity": 1.0,
                    "attributes": attributes,
                }),
            )
            .await
            .unwrap();
        }
    }

    /// Disables (closing every connection, refusing new ones) or enables proxy `name`.
    pub async fn set_enabled(&self, name: &str, enabled: bool) {
        self.call(
            "POST",
            &format!("/proxies/{name}"),
            json!({ "enabled": enabled }),
        )
        .await
        .unwrap();
    }

    /// Every proxy enabled again, every toxic removed.
    pub async fn reset(&self) {
        self.call("POST", "/reset", Value::Null).await.unwrap();
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kept when the campaign failed (a panic unwinds through here), for its story.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
