//! The node's control socket: one JSON request per line, one JSON response per line,
//! over a Unix socket. `tandem status` and the other operator commands are clients.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Node state.
    Status,
    /// Run a consistency point now.
    Checkpoint,
    /// Replay the partner's log from this node's mirror window onto the partner's backing
    /// image. Refused while the mirror link is up unless `force`.
    ReplayPartner {
        /// Replay even though the partner looks alive.
        #[serde(default)]
        force: bool,
    },
    /// Take over the partner's services (planned; the partner hands them over).
    Takeover,
    /// Give the partner's services back.
    Giveback,
    /// Stop the node.
    Shutdown,
}

/// Sends one request and returns the response object. A response with `"ok": false`
/// becomes an error carrying its `error` text.
pub fn request(socket: &Path, req: &Request, timeout: Duration) -> anyhow::Result<serde_json::Value> {
    let mut s = UnixStream::connect(socket).map_err(|e| anyhow::anyhow!("cannot reach the node at {}: {e}", socket.display()))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut resp = String::new();
    BufReader::new(&s).read_line(&mut resp)?;
    if resp.is_empty() {
        anyhow::bail!("the node at {} closed the connection without answering", socket.display());
    }
    let v: serde_json::Value = serde_json::from_str(&resp)?;
    if v.get("ok").and_then(|o| o.as_bool()) != Some(true) {
        anyhow::bail!("{}", v.get("error").and_then(|e| e.as_str()).unwrap_or("request failed"));
    }
    Ok(v)
}
