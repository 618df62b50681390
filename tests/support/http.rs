//! The small HTTP/1.1 both stand-ins speak: read a request with a Content-Length body, answer JSON or a chunked
//! event stream (optionally cut short), on loopback, from a thread of its own.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;

/// A request: method, path, JSON body (`Null` when there is none or it is not JSON).
pub struct Request {
    /// `GET`, `POST`…
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// The body.
    pub body: Value,
}

/// Reads one request; `None` when the client closed the connection.
pub async fn read_request(reader: &mut BufReader<OwnedReadHalf>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).await.ok()?;
    Some(Request { method, path, body: serde_json::from_slice(&body).unwrap_or(Value::Null) })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        529 => "Overloaded",
        _ => "Status",
    }
}

/// A process-unique id fragment.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:016x}{:08x}", (t as u64) ^ ((std::process::id() as u64) << 32), n)
}

/// Answers JSON; false when the connection broke.
pub async fn send_json(w: &mut OwnedWriteHalf, status: u16, body: &Value, extra: &[(&str, String)]) -> bool {
    let data = body.to_string();
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nrequest-id: req_{}\r\n",
        reason(status),
        data.len(),
        unique()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes()).await.is_ok() && w.write_all(data.as_bytes()).await.is_ok()
}

/// Answers an event stream, one chunk per item; with `cut`, drops the connection after that many. False when the
/// connection is (or was made) closed.
pub async fn send_stream(w: &mut OwnedWriteHalf, chunks: &[String], cut: Option<usize>) -> bool {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nrequest-id: req_{}\r\n\r\n",
        unique()
    );
    if w.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for (i, c) in chunks.iter().enumerate() {
        if cut.is_some_and(|n| i >= n) {
            return false;
        }
        if w.write_all(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes()).await.is_err() {
            return false;
        }
    }
    w.write_all(b"0\r\n\r\n").await.is_ok() && w.flush().await.is_ok()
}

/// What a stand-in does with each request; returns false to close the connection.
pub trait Responder: Send + Sync + 'static {
    /// Answers one request.
    fn respond<'a>(
        &'a self,
        req: Request,
        w: &'a mut OwnedWriteHalf,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;
}

/// A server on a free loopback port, in a thread of its own; stops when dropped.
pub struct Server {
    /// The port.
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts serving `responder`.
    pub fn start(responder: Arc<dyn Responder>) -> Server {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        conn = listener.accept() => {
                            if let Ok((stream, _)) = conn {
                                let r = responder.clone();
                                tokio::spawn(async move {
                                    let (read, mut write) = stream.into_split();
                                    let mut reader = BufReader::new(read);
                                    while let Some(req) = read_request(&mut reader).await {
                                        if !r.respond(req, &mut write).await {
                                            break;
                                        }
                                    }
                                });
                            }
                        }
                    }
                }
            });
        });
        Server { port, stop: Some(tx), thread: Some(thread) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
