//! The SSE wire format, in one place: the encoder the hub writes with and a parser that follows
//! the WHATWG "event stream interpretation" rules, which the console's `fetch` transport and the
//! tests read with.
//!
//! The encoder only takes validated names ([`EventName`], [`EventId`]), and splits data on every
//! line end (CR, LF, CRLF), so no value can add a field or an event nobody asked for.

use crate::event::{EventId, EventName};

/// `retry: <ms>`: how long a browser waits before it reconnects.
pub fn retry(millis: u64) -> String {
    format!("retry: {millis}\n\n")
}

/// A comment block: ignored by every parser, it keeps idle connections open through proxies.
pub fn keep_alive() -> &'static str {
    ":\n\n"
}

/// A block with only an id: it dispatches no event but moves the client's last event id.
pub fn id_only(id: &EventId) -> String {
    format!("id: {id}\n\n")
}

/// Appends one event to `out`. `data` is split on CR, LF and CRLF into `data:` lines, so the
/// client reads back the same text with every line end as LF.
pub fn write_event(out: &mut String, id: Option<&EventId>, event: &EventName, data: &str) {
    use std::fmt::Write as _;
    if let Some(id) = id {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "id: {id}");
    }
    out.push_str("event: ");
    out.push_str(event.as_str());
    out.push('\n');
    for line in lines(data) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
}

/// A published event as every stream gets it: its public id (the hub's or the publisher's
/// [`CustomId`](crate::event::CustomId), both free of line ends), its type, a `retry:` if the
/// publisher asked for one, and its data.
pub fn update(id: &str, event: &EventName, retry: Option<u64>, data: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(data.len() + id.len() + 48);
    let _ = writeln!(out, "id: {id}");
    if let Some(retry) = retry {
        let _ = writeln!(out, "retry: {retry}");
    }
    write_event(&mut out, None, event, data);
    out
}

/// One event, encoded on its own.
pub fn event(id: Option<&EventId>, event: &EventName, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 48);
    write_event(&mut out, id, event, data);
    out
}

/// Splits on CRLF, lone CR and LF. A text ending in a line end yields a last empty line, which
/// the client needs to read that final line end back.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(current)
            }
            Some(at) => {
                let skip = if current[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&current[at + skip..]);
                Some(&current[..at])
            }
        }
    })
}

/// An event as a client's `EventSource` dispatches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedEvent {
    /// The event type; `message` when the stream named none.
    pub event: String,
    pub data: String,
    /// The stream's last event id when this event was dispatched (`lastEventId` in a browser).
    pub last_event_id: String,
}

/// An incremental, spec-faithful SSE parser: feed it bytes as they arrive, in any chunking.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// Whether the leading byte-order mark has been dealt with.
    past_bom: bool,
    /// The previous chunk ended in CR, so a leading LF here belongs to that line end.
    after_cr: bool,
    data: String,
    event_type: String,
    last_event_id: String,
    retry: Option<u64>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last event id the stream has set so far, as a reconnect would send it.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time the stream asked for, if any.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Consumes a chunk and returns the events it completed.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Vec<ParsedEvent> {
        let mut events = Vec::new();
        if !self.past_bom {
            // Hold back the first bytes until we know whether they are a BOM.
            self.line.extend_from_slice(chunk);
            if self.line.len() < BOM.len() && BOM.starts_with(&self.line) {
                return events;
            }
            self.past_bom = true;
            let held = std::mem::take(&mut self.line);
            let held = held.strip_prefix(BOM).unwrap_or(&held);
            self.feed_bytes(held, &mut events);
            return events;
        }
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        self.feed_bytes(chunk, &mut events);
        events
    }

    fn feed_bytes(&mut self, mut chunk: &[u8], events: &mut Vec<ParsedEvent>) {
        while let Some(at) = chunk.iter().position(|&b| b == b'\r' || b == b'\n') {
            self.line.extend_from_slice(&chunk[..at]);
            let line = std::mem::take(&mut self.line);
            self.process_line(&String::from_utf8_lossy(&line), events);
            let crlf = chunk[at] == b'\r' && chunk.get(at + 1) == Some(&b'\n');
            if chunk[at] == b'\r' && at + 1 == chunk.len() {
                self.after_cr = true;
            }
            chunk = &chunk[at + if crlf { 2 } else { 1 }..];
        }
        self.line.extend_from_slice(chunk);
    }

    fn process_line(&mut self, line: &str, events: &mut Vec<ParsedEvent>) {
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event_type = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_event_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<ParsedEvent>) {
        let event_type = std::mem::take(&mut self.event_type);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the LF after the last data line
        events.push(ParsedEvent {
            event: if event_type.is_empty() { EventName::MESSAGE.to_owned() } else { event_type },
            data,
            last_event_id: self.last_event_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> (Vec<ParsedEvent>, Parser) {
        let mut parser = Parser::new();
        let events = parser.feed(bytes);
        (events, parser)
    }

    /// Feeds `bytes` in every split into two chunks and one byte at a time, and checks that the
    /// parser sees the same events whatever the chunking.
    fn parse_every_chunking(bytes: &[u8]) -> Vec<ParsedEvent> {
        let (whole, _) = parse_all(bytes);
        for split in 0..=bytes.len() {
            let mut parser = Parser::new();
            let mut events = parser.feed(&bytes[..split]);
            events.extend(parser.feed(&bytes[split..]));
            assert_eq!(events, whole, "split at {split} of {bytes:?}");
        }
        let mut parser = Parser::new();
        let bytewise: Vec<_> = bytes.iter().flat_map(|b| parser.feed(&[*b])).collect();
        assert_eq!(bytewise, whole, "byte by byte: {bytes:?}");
        whole
    }

    fn normalized(text: &str) -> String {
        text.replace("\r\n", "\n").replace('\r', "\n")
    }

    /// Every string over a hostile alphabet survives encode → parse, with line ends as LF, and
    /// never yields more than the one event that was written.
    #[test]
    fn hostile_data_round_trips() {
        let alphabet = ["a", "\r", "\n", "\r\n", "\0", "\u{feff}", " ", ":", "é", "data: x"];
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> =
                texts.iter().flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}"))).collect();
            texts.extend(longer);
        }
        texts.sort();
        texts.dedup();
        let name = EventName::new("update").unwrap();
        let id = EventId { millis: 1_700_000_000_000, seq: 7 };
        for text in &texts {
            let wire = event(Some(&id), &name, text);
            let (events, parser) = parse_all(wire.as_bytes());
            assert_eq!(events.len(), 1, "{text:?} → {wire:?}");
            assert_eq!(events[0].data, normalized(text), "{text:?}");
            assert_eq!(events[0].event, "update");
            assert_eq!(events[0].last_event_id, id.to_string());
            assert_eq!(parser.last_event_id(), id.to_string());
        }
    }

    /// The same round trip holds whatever the chunking, including a CR at a chunk's end.
    #[test]
    fn chunking_does_not_change_what_is_read() {
        let name = EventName::message();
        for text in ["a\rb", "a\r", "\r\n\r\n", "x\r\ny", "\u{feff}lead", "end\r"] {
            let mut wire = retry(3000);
            write_event(&mut wire, None, &name, text);
            wire.push_str(keep_alive());
            write_event(&mut wire, Some(&EventId { millis: 1, seq: 2 }), &name, "second");
            let events = parse_every_chunking(wire.as_bytes());
            assert_eq!(events.len(), 2, "{text:?}");
            assert_eq!(events[0].data, normalized(text));
            assert_eq!(events[1].data, "second");
        }
    }

    /// An empty string is still an event, with empty data.
    #[test]
    fn empty_data_is_an_event() {
        let (events, _) = parse_all(event(None, &EventName::message(), "").as_bytes());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "");
    }

    /// An id-only block dispatches nothing but moves the last event id; `retry:` is read.
    #[test]
    fn id_only_block_sets_last_event_id() {
        let mut wire = retry(2500);
        wire.push_str(&id_only(&EventId { millis: 5, seq: 1 }));
        let (events, parser) = parse_all(wire.as_bytes());
        assert!(events.is_empty());
        assert_eq!(parser.last_event_id(), "5-1");
        assert_eq!(parser.retry(), Some(2500));
    }

    /// Examples from the WHATWG spec: BOM, CR / LF / CRLF line ends, comments, a field without
    /// a colon, the single leading space, an id with NUL ignored, an unfinished event dropped.
    #[test]
    fn spec_examples() {
        let wire = b"\xEF\xBB\xBFdata: YHOO\rdata: +2\r\ndata: 10\n\n: comment\n\ndata\n\ndata:  two spaces\nid: a\0b\n\nevent: add\ndata:no space\n\ndata: unfinished";
        let events = parse_every_chunking(wire);
        let data: Vec<_> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["YHOO\n+2\n10", "", " two spaces", "no space"]);
        assert_eq!(events[3].event, "add");
        assert!(events.iter().all(|e| e.last_event_id.is_empty()));
    }

    /// A second BOM, or one after other bytes, is data, not stripped.
    #[test]
    fn only_one_leading_bom_is_stripped() {
        let (events, _) = parse_all(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n");
        assert!(events.is_empty(), "the field name is BOM+data, which is unknown");
        let (events, _) = parse_all(b"data: \xEF\xBB\xBFx\n\n");
        assert_eq!(events[0].data, "\u{feff}x");
    }

    /// An independent parser (eventsource-stream) reads the encoder's output the same way.
    #[test]
    fn a_third_party_parser_agrees() {
        use futures::StreamExt;
        let name = EventName::new("n").unwrap();
        let texts = ["plain", "two\nlines", "cr\ronly", "crlf\r\nend\r\n", "", "\0nul", " lead"];
        let mut wire = String::new();
        for (seq, text) in texts.iter().enumerate() {
            write_event(&mut wire, Some(&EventId { millis: 9, seq: seq as u64 }), &name, text);
        }
        let chunks = futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes::Bytes::from(wire))]);
        let theirs: Vec<_> =
            futures::executor::block_on(eventsource_stream::Eventsource::eventsource(chunks).collect::<Vec<_>>());
        assert_eq!(theirs.len(), texts.len());
        for (seq, (event, text)) in theirs.into_iter().zip(texts).enumerate() {
            let event = event.unwrap();
            assert_eq!(event.data, normalized(text));
            assert_eq!(event.event, "n");
            assert_eq!(event.id, format!("9-{seq}"));
        }
    }
}
