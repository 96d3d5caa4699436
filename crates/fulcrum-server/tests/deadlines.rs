//! A client that stops sending: a stalled JSON body and a half-sent blob upload are both ended
//! with 408 problem+json after the body idle timeout, the connection is closed, and the upload's
//! temp file is gone.

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send `head` and the first part of a body that claims more, then wait for the answer.
async fn stall(h: &Harness, head: &str, partial: &[u8]) -> (String, Duration) {
    let addr = h.url.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(partial).await.unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await.expect("answered").unwrap();
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

#[tokio::test]
async fn stalled_bodies_get_408_and_leave_nothing_behind() {
    let h = Harness::start_with(tempfile::tempdir().unwrap(), |c| c.body_idle_timeout = Duration::from_secs(1)).await;
    let token = common::token("ci");

    let json_head = format!(
        "POST /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n"
    );
    let (answer, took) = stall(&h, &json_head, b"{\"name\": \"ha").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("body_timeout"), "{answer}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    h.get("viewer", "/v1/models/ha", reqwest::StatusCode::NOT_FOUND).await;

    let blob_head = format!(
        "POST /v1/blobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: 1000000\r\n\r\n"
    );
    let tmp = h.dir.path().join("data/blobs/tmp");
    let (answer, _) = stall(&h, &blob_head, &[7u8; 5000]).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "the upload's temp file is removed");
}
