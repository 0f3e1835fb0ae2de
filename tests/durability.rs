//! Nothing acknowledged is lost, and restarts resume from saved offsets: kill -9 in the middle
//! of a burst of writes, clean restarts, and a restart without a snapshot.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, http};

const READY: Duration = Duration::from_secs(60);

/// Waits until the server replayed the log (`/readyz` says `caught_up`).
async fn wait_caught_up(server: &Server) {
    let started = Instant::now();
    loop {
        if let Ok((200, body)) = http::get(server.addr, "/readyz").await
            && body["caught_up"] == true
        {
            return;
        }
        assert!(
            started.elapsed() < READY,
            "never caught up; logs:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `replayed_records` of the "caught up with the log" line.
fn replayed(server: &Server) -> Option<u64> {
    server.logs().lines().find_map(|line| {
        let event: Value = serde_json::from_str(line).ok()?;
        (event["message"] == "caught up with the log")
            .then(|| event["replayed_records"].as_u64())?
    })
}

#[tokio::test]
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

    let restarted = Server::start_with_data_dir(&bootstrap, &["--topic-prefix", &prefix], data_dir);
    wait_caught_up(&restarted).await;
    let listed = support::all_order_ids(restarted.addr, 500).await;
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "an order is listed twice");
    for id in &acknowledged {
        assert!(
            unique.contains(id),
            "order {id} was answered 201 but is gone after kill -9"
        );
    }
    let (_, stats) = http::get(restarted.addr, "/api/stats").await.unwrap();
    assert_eq!(
        stats["orders"]["total"].as_u64().unwrap() as usize,
        listed.len()
    );
    assert_eq!(
        stats["orders"]["by_status"]["Pending"].as_u64().unwrap() as usize,
        listed.len()
    );
}

#[tokio::test]
async fn a_clean_restart_resumes_from_the_saved_offsets() {
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("resume"));
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
    wait_caught_up(&first).await;
    assert_eq!(replayed(&first), Some(0));
    assert!(first.terminate(Duration::from_secs(20)).success());
    let data_dir = first.into_data_dir();
    assert!(
        data_dir.join("snapshot.json").exists(),
        "no snapshot saved at shutdown"
    );

    // While it is down, another instance writes 7 more orders.
    let other = Server::start(&bootstrap, &["--topic-prefix", &prefix]);
    other.wait_ready(READY).await;
    wait_caught_up(&other).await;
    assert_eq!(
        replayed(&other),
        Some(20),
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
        Server::start_with_data_dir(&bootstrap, &["--topic-prefix", &prefix], data_dir.clone());
    wait_caught_up(&restarted).await;
    assert!(
        restarted.logs().contains("loaded the snapshot"),
        "{}",
        restarted.logs()
    );
    assert_eq!(replayed(&restarted), Some(7), "{}", restarted.logs());
    assert_eq!(support::all_order_ids(restarted.addr, 500).await.len(), 27);
    drop(restarted);

    // Without its snapshot, the same restart replays everything and reaches the same state.
    let data_dir_2 = std::env::temp_dir().join(support::unique_name("nosnap"));
    let from_scratch =
        Server::start_with_data_dir(&bootstrap, &["--topic-prefix", &prefix], data_dir_2);
    wait_caught_up(&from_scratch).await;
    assert_eq!(replayed(&from_scratch), Some(27));
    assert_eq!(
        support::all_order_ids(from_scratch.addr, 500).await.len(),
        27
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn a_corrupt_snapshot_is_reported_and_the_log_replayed() {
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("corrupt"));
    let data_dir = std::env::temp_dir().join(support::unique_name("corrupt-data"));
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("snapshot.json"), b"{ torn").unwrap();
    let server = Server::start_with_data_dir(&bootstrap, &["--topic-prefix", &prefix], data_dir);
    server.wait_ready(READY).await;
    wait_caught_up(&server).await;
    assert!(
        server.logs().contains("cannot read the snapshot"),
        "{}",
        server.logs()
    );
    let (status, _) = http::post(server.addr, "/api/orders/create?wait=true", &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 201);
}
