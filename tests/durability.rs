//! Nothing acknowledged is lost, and restarts resume from the store's offsets: kill -9 in the
//! middle of a burst of writes, clean restarts, a restart without a store, an old snapshot and a
//! corrupt store. The binary runs as a child process where it must die (kill -9, SIGTERM) or
//! fail to start; every other instance runs in-process ([`TestApp`]), and how much of the log
//! a start replayed is read from `GET /api/kafka` (`start`).

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Running, Server, TestApp, http};

const READY: Duration = Duration::from_secs(60);

/// Waits until the server replayed the log (`/readyz` says `caught_up`).
async fn wait_caught_up(server: &impl Running) {
    support::eventually("caught up", READY, || async {
        match http::get(server.addr(), "/readyz").await {
            Ok((200, body)) if body["caught_up"] == true => Ok(()),
            Ok((status, body)) => Err(format!("{status} {body}; logs:\n{}", server.logs())),
            Err(error) => Err(error),
        }
    })
    .await;
}

/// Where the replay at start began and how many records it read (`GET /api/kafka`'s
/// `start`), once caught up.
async fn start_replay(server: &impl Running) -> (String, u64) {
    wait_caught_up(server).await;
    let (status, kafka) = http::get(server.addr(), "/api/kafka").await.unwrap();
    assert_eq!(status, 200, "{kafka}");
    let start = &kafka["start"];
    (
        start["from"].as_str().unwrap_or_default().to_string(),
        start["replayed_records"]
            .as_u64()
            .unwrap_or_else(|| panic!("{kafka}")),
    )
}

/// How many records the replay at start read.
async fn replayed(server: &impl Running) -> u64 {
    start_replay(server).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_loses_no_acknowledged_order_and_duplicates_none() {
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("kill9"));
    let server = Server::start(&bootstrap, &["--topic-prefix", &prefix]);
    server.wait_ready(READY).await;

    // Eight writers place orders until the server dies under them.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let addr = server.addr;
    let mut writers = Vec::new();
    for _ in 0..8 {
        let acknowledged = Arc::clone(&acknowledged);
        writers.push(tokio::spawn(async move {
            for _ in 0..400 {
                match http::post(addr, "/api/orders/create", &json!({})).await {
                    Ok((201, body)) => acknowledged
                        .lock()
                        .unwrap()
                        .push(body["order"]["order_id"].as_str().unwrap().to_string()),
                    Ok((status, body)) => panic!("unexpected {status}: {body}"),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Let the burst run, then kill without warning.
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 300 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let data_dir = server.kill_hard();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged: Vec<String> = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 300,
        "only {} orders before the kill",
        acknowledged.len()
    );

    let restarted =
        TestApp::start_with_data_dir(&bootstrap, &["--topic-prefix", &prefix], data_dir).await;
    wait_caught_up(&restarted).await;
    let listed = check_every_order_once(&restarted, &acknowledged, 0).await;
    let (_, stats) = http::get(restarted.addr, "/api/stats").await.unwrap();
    assert_eq!(
        stats["orders"]["by_status"]["Pending"].as_u64().unwrap() as usize,
        listed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_running_starts_another_instance_from_its_offsets() {
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("backup"));
    let server = TestApp::start(&bootstrap, &["--topic-prefix", &prefix]).await;
    server.wait_ready(READY).await;
    wait_caught_up(&server).await;
    let place = |n: usize| async move {
        for _ in 0..n {
            let (status, _) = http::post(server.addr, "/api/orders/create?wait=true", &json!({}))
                .await
                .unwrap();
            assert_eq!(status, 201);
        }
    };
    place(5).await;
    let (status, report) = http::post(server.addr, "/api/store/backup", &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 201, "{report}");
    assert!(report["keys"].as_u64().unwrap() > 0, "{report}");
    let copied: u64 = report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["next_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(copied, 5, "the copy holds the 5 orders' offsets: {report}");
    let backup_dir = std::path::PathBuf::from(report["data_dir"].as_str().unwrap());
    assert!(backup_dir.join("store").is_dir(), "{report}");
    // Writes go on after the backup; a second backup while the server runs is fine too.
    place(2).await;
    let (status, second) = http::post(server.addr, "/api/store/backup", &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 201, "{second}");
    let (status, refused) = http::get(server.addr, "/api/store/backup").await.unwrap();
    assert_eq!(status, 405, "{refused}");

    // Another instance on a copy of the first backup reads only what came after it.
    let copy = std::env::temp_dir().join(support::unique_name("restored"));
    copy_dir(&backup_dir, &copy);
    let restored =
        TestApp::start_with_data_dir(&bootstrap, &["--topic-prefix", &prefix], copy).await;
    assert_eq!(
        start_replay(&restored).await,
        ("stored offsets".to_string(), 2)
    );
    assert_eq!(support::all_order_ids(restored.addr, 500).await.len(), 7);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_resumes_from_the_saved_offsets() {
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("resume"));
    // A child process: the restart after SIGTERM is what is checked.
    let mut first = Server::start(&bootstrap, &["--topic-prefix", &prefix]);
    first.wait_ready(READY).await;
    // Caught up with the (empty) log before writing: the 20 orders then arrive live, not as
    // replay, whatever the timing of the consumers' start.
    wait_caught_up(&first).await;
    for _ in 0..20 {
        let (status, _) = http::post(first.addr, "/api/orders/create?wait=true", &json!({}))
            .await
            .unwrap();
        assert_eq!(status, 201);
    }
    assert_eq!(replayed(&first).await, 0);
    assert!(first.terminate(Duration::from_secs(20)).success());
    let data_dir = first.into_data_dir();
    assert!(data_dir.join("store").is_dir(), "no store in the data dir");

    // While it is down, another instance writes 7 more orders.
    let other = TestApp::start(&bootstrap, &["--topic-prefix", &prefix]).await;
    other.wait_ready(READY).await;
    assert_eq!(
        start_replay(&other).await,
        ("earliest offsets".to_string(), 20),
        "a fresh instance replays the whole log"
    );
    for _ in 0..7 {
        let (status, _) = http::post(other.addr, "/api/orders/create?wait=true", &json!({}))
            .await
            .unwrap();
        assert_eq!(status, 201);
    }

    // The restart reads only what it missed, and ends with all 27.
    let restarted =
        TestApp::start_with_data_dir(&bootstrap, &["--topic-prefix", &prefix], data_dir.clone())
            .await;
    assert_eq!(
        start_replay(&restarted).await,
        ("stored offsets".to_string(), 7)
    );
    assert_eq!(support::all_order_ids(restarted.addr, 500).await.len(), 27);
    let data_dir = restarted.stop(Duration::from_secs(20)).await;

    // Without its store, the same restart replays everything and reaches the same state.
    let data_dir_2 = std::env::temp_dir().join(support::unique_name("nostore"));
    let from_scratch =
        TestApp::start_with_data_dir(&bootstrap, &["--topic-prefix", &prefix], data_dir_2).await;
    assert_eq!(
        start_replay(&from_scratch).await,
        ("earliest offsets".to_string(), 27)
    );
    assert_eq!(
        support::all_order_ids(from_scratch.addr, 500).await.len(),
        27
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_snapshot_is_noticed_and_the_log_replayed() {
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("oldsnap"));
    let data_dir = std::env::temp_dir().join(support::unique_name("oldsnap-data"));
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("snapshot.json"), b"{ torn").unwrap();
    let server =
        TestApp::start_with_data_dir(&bootstrap, &["--topic-prefix", &prefix], data_dir.clone())
            .await;
    server.wait_ready(READY).await;
    // Noticed: the old state is gone, and the log was read from its start.
    assert_eq!(start_replay(&server).await.0, "earliest offsets");
    assert!(!data_dir.join("snapshot.json").exists());
    let (status, _) = http::post(server.addr, "/api/orders/create?wait=true", &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 201);
}

/// Overwrites every file of the store (but its lock) with garbage.
fn overwrite_files(path: &std::path::Path) {
    for entry in std::fs::read_dir(path).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            overwrite_files(&path);
        } else if path.file_name().is_some_and(|n| n != "lock") {
            let len = std::fs::metadata(&path).unwrap().len().max(64) as usize;
            std::fs::write(&path, vec![0x5a_u8; len]).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_stops_the_start_with_the_way_out_and_rebuild_replays() {
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("corrupt"));
    let first = TestApp::start(&bootstrap, &["--topic-prefix", &prefix]).await;
    first.wait_ready(READY).await;
    wait_caught_up(&first).await;
    for _ in 0..3 {
        let (status, _) = http::post(first.addr, "/api/orders/create?wait=true", &json!({}))
            .await
            .unwrap();
        assert_eq!(status, 201);
    }
    let data_dir = first.stop(Duration::from_secs(20)).await;
    overwrite_files(&data_dir.join("store"));

    // The start stops with the way out named, instead of serving a broken read model: a child
    // process, as the binary's exit is what is checked.
    let mut refused = std::process::Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .args([
            "--kafka",
            &bootstrap,
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .args(["--topic-prefix", &prefix])
        .arg("--data-dir")
        .arg(&data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = refused.kill();
            panic!("shopstream kept running on a corrupt store");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().unwrap(), &mut logs).unwrap();
    assert!(!status.success(), "started on a corrupt store: {logs}");
    assert!(logs.contains("--rebuild-store"), "{logs}");

    let rebuilt = TestApp::start_with_data_dir(
        &bootstrap,
        &["--topic-prefix", &prefix, "--rebuild-store"],
        data_dir,
    )
    .await;
    rebuilt.wait_ready(READY).await;
    assert_eq!(replayed(&rebuilt).await, 3);
    assert_eq!(support::all_order_ids(rebuilt.addr, 500).await.len(), 3);
}

/// Places demo orders from `writers` tasks until the server stops answering; returns the ids
/// it acknowledged (201).
fn burst(
    addr: std::net::SocketAddr,
    writers: usize,
) -> (Arc<Mutex<Vec<String>>>, Vec<tokio::task::JoinHandle<()>>) {
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let acknowledged = Arc::clone(&acknowledged);
        tasks.push(tokio::spawn(async move {
            for _ in 0..2_000 {
                match http::post(addr, "/api/orders/create", &json!({})).await {
                    Ok((201, body)) => acknowledged
                        .lock()
                        .unwrap()
                        .push(body["order"]["order_id"].as_str().unwrap().to_string()),
                    // Not acknowledged: the client would retry; it is not counted.
                    Ok((503, _)) => {}
                    Ok((status, body)) => panic!("unexpected {status}: {body}"),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    (acknowledged, tasks)
}

/// Every acknowledged order is listed exactly once, and the statistics agree; returns the
/// listed ids.
async fn check_every_order_once(
    server: &impl Running,
    acknowledged: &[String],
    cycle: usize,
) -> Vec<String> {
    let listed = support::all_order_ids(server.addr(), 500).await;
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "cycle {cycle}: an order is listed twice"
    );
    for id in acknowledged {
        assert!(
            unique.contains(id),
            "cycle {cycle}: order {id} was answered 201 but is gone after kill -9"
        );
    }
    let (_, stats) = http::get(server.addr(), "/api/stats").await.unwrap();
    assert_eq!(
        stats["orders"]["total"].as_u64().unwrap() as usize,
        listed.len(),
        "cycle {cycle}: the statistics disagree with the list"
    );
    listed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kills_at_random_moments_lose_and_duplicate_nothing() {
    use rand::{Rng, SeedableRng};
    const KILLS: usize = 20;
    let seed: u64 = std::env::var("SHOPSTREAM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("kill loop seed {seed} (SHOPSTREAM_TEST_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("killloop"));
    let data_dir = std::env::temp_dir().join(support::unique_name("killloop-data"));
    let mut acknowledged: Vec<String> = Vec::new();
    for cycle in 0..KILLS {
        let server =
            Server::start_with_data_dir(&bootstrap, &["--topic-prefix", &prefix], data_dir.clone());
        wait_caught_up(&server).await;
        check_every_order_once(&server, &acknowledged, cycle).await;
        let (acked, writers) = burst(server.addr, 6);
        let after = Duration::from_millis(rng.random_range(20..1_200));
        tokio::time::sleep(after).await;
        server.kill_hard();
        for writer in writers {
            writer.await.unwrap();
        }
        acknowledged.extend(acked.lock().unwrap().drain(..));
    }
    assert!(
        acknowledged.len() >= 200,
        "only {} orders acknowledged over {KILLS} cycles",
        acknowledged.len()
    );
    let last =
        TestApp::start_with_data_dir(&bootstrap, &["--topic-prefix", &prefix], data_dir).await;
    wait_caught_up(&last).await;
    check_every_order_once(&last, &acknowledged, KILLS).await;
}

/// A small tmpfs of our own as the data dir (root only: `mount -t tmpfs`), unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = std::env::temp_dir().join(support::unique_name("smalldisk"));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            Some(Self(dir))
        } else {
            let _ = std::fs::remove_dir(&dir);
            None
        }
    }

    /// Fills the disk with a file of zeros until it is full; returns the file.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_consumption_answers_503_and_recovers_without_loss() {
    let Some(disk) = SmallDisk::mount(24) else {
        // `mount` needs root; CI runs as root, so there this test always runs.
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    };
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("diskfull"));
    let data_dir = disk.0.join("data");
    let server =
        TestApp::start_with_data_dir(&bootstrap, &["--topic-prefix", &prefix], data_dir.clone())
            .await;
    wait_caught_up(&server).await;
    let mut acknowledged = Vec::new();
    for _ in 0..5 {
        let (status, body) = http::post(server.addr, "/api/orders/create?wait=true", &json!({}))
            .await
            .unwrap();
        assert_eq!(status, 201, "{body}");
        acknowledged.push(body["order"]["order_id"].as_str().unwrap().to_string());
    }

    // The disk fills up: the next orders reach Kafka but cannot be applied.
    let filler = disk.fill();
    let mut refused = 0;
    let started = Instant::now();
    loop {
        let (status, body) = http::post(server.addr, "/api/orders/create", &json!({}))
            .await
            .unwrap();
        match status {
            201 => acknowledged.push(body["order"]["order_id"].as_str().unwrap().to_string()),
            // Refused up front once the store is known to be unwritable (a request already
            // past that check may time out waiting for the consumers instead).
            503 if body["error"]["code"] == "store_unavailable" => refused += 1,
            503 => assert_eq!(body["error"]["code"], "catching_up", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
        let (ready, readyz) = http::get(server.addr, "/readyz").await.unwrap();
        if ready == 503 && refused > 0 {
            assert_eq!(readyz["error"]["code"], "store_unavailable", "{readyz}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the full disk never showed in /readyz: {readyz}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Space returns: consumption resumes by itself and every acknowledged order is there.
    std::fs::remove_file(&filler).unwrap();
    let (_, readyz) = support::eventually("ready again", Duration::from_secs(60), || async {
        match http::get(server.addr, "/readyz").await {
            Ok((200, body)) => Ok((200, body)),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(readyz["status"], "ready");
    let (status, body) = http::post(server.addr, "/api/orders/create?wait=true", &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    acknowledged.push(body["order"]["order_id"].as_str().unwrap().to_string());
    let listed = support::eventually("every order listed", Duration::from_secs(30), || async {
        let listed = support::all_order_ids(server.addr, 500).await;
        if acknowledged.iter().all(|id| listed.contains(id)) {
            Ok(listed)
        } else {
            Err(format!("{} of {} listed", listed.len(), acknowledged.len()))
        }
    })
    .await;
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "an order is listed twice");
    // Stopped before the disk is unmounted: the store lets go of its files.
    server.stop(Duration::from_secs(20)).await;
}
