//! Follow a stream over the websocket watch and print its text as it arrives.
//!
//! ```sh
//! cargo run --example follow -- ws://127.0.0.1:8080/api/v1/projects/demo/watch/build/1/+/stdout
//! ```
//! It prints each text line (binary and datagram data as is), exits when the stream ends,
//! and when the server closes it for lagging (1013, `lagged; resume from=N`) it reconnects
//! with `from=N`, so nothing is skipped or printed twice.

use std::io::Write as _;

use futures::StreamExt as _;
use logdog::client::read;
use logdog::http::watch::WatchFrame;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: follow ws://HOST/api/v1/projects/PROJECT/watch/PREFIX/+/NAME");
        std::process::exit(2);
    };
    let mut from: Option<u64> = None;
    loop {
        let target = match from {
            Some(n) => format!("{url}{}from={n}", if url.contains('?') { '&' } else { '?' }),
            None => url.clone(),
        };
        let (mut ws, _) = match tokio_tungstenite::connect_async(&target).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("follow: cannot watch {target}: {e}");
                std::process::exit(1);
            }
        };
        let mut stdout = std::io::stdout().lock();
        let mut resume = None;
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Text(t)) => match serde_json::from_str(&t).expect("frames are JSON") {
                    WatchFrame::Entries { entries } => {
                        for e in read::entries_of(entries).expect("entries from the server") {
                            let _ = read::write_entry(&mut stdout, &e);
                        }
                        let _ = stdout.flush();
                    }
                    WatchFrame::State { stream } => {
                        eprintln!("follow: stream is {}", stream.state.status.as_str())
                    }
                    WatchFrame::End { .. } => return,
                },
                Ok(Message::Close(Some(c))) => {
                    resume = c
                        .reason
                        .strip_prefix("lagged; resume from=")
                        .and_then(|n| n.parse::<u64>().ok());
                    if resume.is_none() {
                        eprintln!("follow: closed: {} {}", u16::from(c.code), c.reason);
                    }
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("follow: {e}");
                    break;
                }
            }
        }
        match resume {
            Some(n) => from = Some(n),
            None => std::process::exit(1),
        }
    }
}
