//! A local HTTP/1.1 server on 127.0.0.1 that replays scripted responses byte for byte and
//! records the requests it got.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    /// Body chunks, each sent as one HTTP chunk.
    pub(crate) chunks: Vec<Vec<u8>>,
    /// Wait between chunks.
    pub(crate) pause: Duration,
    /// Close the connection after the chunks without ending the body.
    pub(crate) drop_mid_stream: bool,
}

impl Reply {
    pub(crate) fn sse(body: &[u8], chunk_sizes: &[usize]) -> Self {
        let mut chunks = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < body.len() {
            let size = chunk_sizes
                .get(i % chunk_sizes.len().max(1))
                .copied()
                .unwrap_or(body.len())
                .max(1);
            let end = (at + size).min(body.len());
            chunks.push(body[at..end].to_vec());
            at = end;
            i += 1;
        }
        Self {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks,
            pause: Duration::ZERO,
            drop_mid_stream: false,
        }
    }

    pub(crate) fn error(status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        Self {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain([("content-type".to_string(), "application/json".to_string())])
                .collect(),
            chunks: vec![body.as_bytes().to_vec()],
            pause: Duration::ZERO,
            drop_mid_stream: false,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Value,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub(crate) async fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(replies.into_iter()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let replies = Arc::clone(&replies);
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    // One request per connection is enough: the reply says `connection: close`.
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    let header_end = loop {
                        let n = socket.read(&mut tmp).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&tmp[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
                    let mut lines = head.split("\r\n");
                    let path = lines
                        .next()
                        .unwrap_or("")
                        .split(' ')
                        .nth(1)
                        .unwrap_or("")
                        .to_string();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
                        .collect();
                    let length: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < header_end + length {
                        let n = socket.read(&mut tmp).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&tmp[..n]);
                    }
                    let body = serde_json::from_slice(&buf[header_end..]).unwrap_or(Value::Null);
                    log.lock().unwrap().push(Seen {
                        path,
                        headers,
                        body,
                    });
                    let reply = replies.lock().unwrap().next();
                    let Some(reply) = reply else {
                        let _ = socket.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 21\r\nconnection: close\r\n\r\nno more replies saved").await;
                        return;
                    };
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\ntransfer-encoding: chunked\r\nconnection: close\r\n",
                        reply.status
                    );
                    for (k, v) in &reply.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    for chunk in &reply.chunks {
                        if !reply.pause.is_zero() {
                            tokio::time::sleep(reply.pause).await;
                        }
                        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                        framed.extend_from_slice(chunk);
                        framed.extend_from_slice(b"\r\n");
                        if socket.write_all(&framed).await.is_err() {
                            return;
                        }
                        let _ = socket.flush().await;
                    }
                    if reply.drop_mid_stream {
                        // Close without the final zero-length chunk: the body is cut short.
                        let _ = socket.shutdown().await;
                        return;
                    }
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { base, seen }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
