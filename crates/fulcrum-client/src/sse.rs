//! A minimal server-sent events parser (WHATWG HTML §9.2): `id:`, `event:`, `data:` fields,
//! events separated by a blank line, comments (`:`) ignored.

use futures_util::{Stream, StreamExt};

use crate::{ClientError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Longest event we accept; a stream that sends more without a blank line is cut.
const MAX_EVENT: usize = 4 << 20;

#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
}

impl Parser {
    /// Feed bytes; returns the events completed by them.
    ///
    /// # Errors
    /// An event larger than the limit.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = find_blank_line(&self.buf) {
            let block: Vec<u8> = self.buf.drain(..pos.0).collect();
            self.buf.drain(..pos.1);
            if let Some(ev) = parse_block(&String::from_utf8_lossy(&block)) {
                out.push(ev);
            }
        }
        if self.buf.len() > MAX_EVENT {
            return Err(ClientError::Protocol("server-sent event too large".into()));
        }
        Ok(out)
    }
}

/// (end of block, length of the separator)
fn find_blank_line(b: &[u8]) -> Option<(usize, usize)> {
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\n\n") {
            Some((i, 2))
        } else if b[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else {
            None
        }
    })
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let mut ev = SseEvent { id: None, event: None, data: String::new() };
    let mut has_data = false;
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "id" => ev.id = Some(value.to_owned()),
            "event" => ev.event = Some(value.to_owned()),
            "data" => {
                if has_data {
                    ev.data.push('\n');
                }
                ev.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    has_data.then_some(ev)
}

/// Turn a byte stream into an event stream.
pub fn parse<B: AsRef<[u8]>>(bytes: impl Stream<Item = Result<B>> + Unpin) -> impl Stream<Item = Result<SseEvent>> {
    futures_util::stream::unfold(
        (bytes, Parser::default(), std::collections::VecDeque::new()),
        |(mut s, mut p, mut pending)| async move {
            loop {
                if let Some(ev) = pending.pop_front() {
                    return Some((Ok(ev), (s, p, pending)));
                }
                match s.next().await? {
                    Ok(chunk) => match p.feed(chunk.as_ref()) {
                        Ok(evs) => pending.extend(evs),
                        Err(e) => return Some((Err(e), (s, p, pending))),
                    },
                    Err(e) => return Some((Err(e), (s, p, pending))),
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_events_and_ignores_comments() {
        let mut p = Parser::default();
        assert!(p.feed(b": keep-alive\n\nid: 4\nevent: prom").unwrap().is_empty());
        let evs = p.feed(b"otion\ndata: {\"a\":1}\n\nid: 5\r\ndata: x\r\ndata: y\r\n\r\n").unwrap();
        assert_eq!(
            evs,
            vec![
                SseEvent { id: Some("4".into()), event: Some("promotion".into()), data: "{\"a\":1}".into() },
                SseEvent { id: Some("5".into()), event: None, data: "x\ny".into() },
            ]
        );
    }
}
