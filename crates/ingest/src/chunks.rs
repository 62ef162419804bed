//! Reading an export as a sequence of chunks of whole records, so that a file of any
//! size is parsed with bounded memory. A chunk is about [`CHUNK_BYTES`] long and ends
//! on a record boundary (outside CSV quotes); every chunk but the first starts with the
//! file's header lines again, and carries the shift from its own line numbers to the
//! file's, so formats parse a chunk exactly like a small file.
//!
//! Encoding: `auto` is decided on the first chunk (valid UTF-8: UTF-8, else
//! Windows-1251); a UTF-8 BOM at the start is removed.

use bytes::Bytes;
use crmflow_core::config::TextEncoding;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{IngestError, Result};
use crate::text::detect_delimiter;

/// Target chunk size in bytes.
pub const CHUNK_BYTES: usize = 8 << 20;
/// A record longer than this is cut at a line end anyway (the parser then reports it).
const MAX_RECORD_BYTES: usize = 64 << 20;

/// How a file splits into records (decided by the format on the file's first bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// A JSON document whose records are a top-level array, or the array under the
    /// `records` key of a top-level object (a page): every chunk is a JSON array of
    /// whole records, and `line_shift` counts the records before it.
    JsonRecords,
    /// One record per line (NDJSON).
    Lines,
    /// Delimited text: `skip_lines` title lines, the header, then records, quoted as
    /// in CSV when `quoting`. With `group_by`, consecutive records with the same value
    /// in that column stay in one chunk (a Shopify order's line items), so that chunks
    /// parse independently; a group longer than 64 MiB is cut at a record end anyway.
    Delimited {
        delimiter: Option<u8>,
        quoting: bool,
        skip_lines: usize,
        group_by: Option<&'static str>,
    },
}

/// A piece of a file to parse.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// Index of the file in the staging area.
    pub file: u32,
    /// How messages name the file.
    pub name: &'a str,
    /// Whole records; for delimited files, every chunk starts with the header lines.
    pub text: &'a str,
    /// Added to a line number of `text` gives the line number in the file.
    pub line_shift: u64,
    /// Whether this is the file's first chunk (the header belongs to the file here).
    pub first: bool,
    /// Whether this is the file's last chunk.
    pub last: bool,
}

impl<'a> Chunk<'a> {
    /// A whole file as one chunk (tests and small documents).
    pub fn whole(file: u32, name: &'a str, text: &'a str) -> Self {
        Chunk {
            file,
            name,
            text,
            line_shift: 0,
            first: true,
            last: true,
        }
    }
}

/// An owned chunk as read.
#[derive(Debug)]
pub struct ChunkText {
    pub text: String,
    pub line_shift: u64,
    pub first: bool,
    pub last: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoding {
    Utf8,
    Windows1251,
}

/// Reads a byte stream as chunks of whole records.
pub struct ChunkReader {
    name: String,
    stream: BoxStream<'static, Result<Bytes>>,
    encoding: TextEncoding,
    decoding: Option<Decoding>,
    framing: Option<Framing>,
    /// Delimiter used to find record ends of quoted delimited files.
    delimiter: u8,
    /// Position of the `group_by` column of delimited framing, found in the header.
    group_col: Option<usize>,
    pending: Vec<u8>,
    eof: bool,
    /// Header text repeated in front of every chunk but the first, and its line count.
    prefix: String,
    prefix_lines: u64,
    /// Physical lines of the file before `pending`.
    lines_before: u64,
    chunks: u64,
    chunk_bytes: usize,
    /// A JSON records array has been read to its end.
    json_done: bool,
}

impl ChunkReader {
    pub fn new(
        name: &str,
        stream: BoxStream<'static, Result<Bytes>>,
        encoding: TextEncoding,
    ) -> Self {
        Self::with_chunk_bytes(name, stream, encoding, CHUNK_BYTES)
    }

    /// A reader with another target chunk size (tests use tiny chunks).
    pub fn with_chunk_bytes(
        name: &str,
        stream: BoxStream<'static, Result<Bytes>>,
        encoding: TextEncoding,
        chunk_bytes: usize,
    ) -> Self {
        ChunkReader {
            name: name.to_string(),
            stream,
            encoding,
            decoding: None,
            framing: None,
            delimiter: b',',
            group_col: None,
            pending: vec![],
            eof: false,
            prefix: String::new(),
            prefix_lines: 0,
            lines_before: 0,
            chunks: 0,
            chunk_bytes: chunk_bytes.max(1),
            json_done: false,
        }
    }

    async fn fill(&mut self, at_least: usize) -> Result<()> {
        while !self.eof && self.pending.len() < at_least {
            match self.stream.next().await {
                Some(bytes) => self.pending.extend_from_slice(&bytes?),
                None => self.eof = true,
            }
        }
        Ok(())
    }

    /// The next chunk, or `None` at the end of the file. `framing` is asked once, with
    /// the decoded start of the file.
    pub async fn next_chunk(
        &mut self,
        framing: impl FnOnce(&str) -> Framing,
    ) -> Result<Option<ChunkText>> {
        let first = self.chunks == 0;
        // The first read is large enough for the format to see the header.
        self.fill(if first {
            self.chunk_bytes.max(64 << 10)
        } else {
            self.chunk_bytes
        })
        .await?;
        if first {
            if self.pending.starts_with(b"\xEF\xBB\xBF") {
                self.pending.drain(..3);
            }
            let decoding = match self.encoding {
                TextEncoding::Windows1251 => Decoding::Windows1251,
                TextEncoding::Utf8 => Decoding::Utf8,
                TextEncoding::Auto => match std::str::from_utf8(&self.pending) {
                    Ok(_) => Decoding::Utf8,
                    // Only an incomplete character at the end of the buffer.
                    Err(e) if e.error_len().is_none() => Decoding::Utf8,
                    Err(_) => Decoding::Windows1251,
                },
            };
            self.decoding = Some(decoding);
            let head_len = self.pending.len().min(64 << 10);
            let head = decode(self.pending[..head_len].to_vec(), decoding);
            let chosen = framing(&head);
            if let Framing::Delimited {
                delimiter,
                skip_lines,
                quoting,
                group_by,
            } = &chosen
            {
                let header_line = head.split('\n').nth(*skip_lines).unwrap_or("");
                self.delimiter = delimiter.unwrap_or_else(|| detect_delimiter(header_line));
                self.group_col = group_by.and_then(|name| {
                    let header = format!("{header_line}\n");
                    (0..)
                        .map_while(|col| {
                            field_value(header.as_bytes(), col, self.delimiter, *quoting)
                        })
                        .position(|value| value == name.as_bytes())
                });
            }
            self.framing = Some(chosen);
        }
        if self.framing == Some(Framing::JsonRecords) {
            return self.next_json_chunk(first).await;
        }
        if self.pending.is_empty() && self.eof {
            return Ok(None);
        }
        // The first chunk holds at least the whole header, so it can be repeated.
        let mut header_len = 0;
        if let (
            true,
            Some(Framing::Delimited {
                quoting,
                skip_lines,
                ..
            }),
        ) = (first, self.framing.clone())
        {
            header_len = loop {
                match header_end(&self.pending, skip_lines, quoting, self.delimiter) {
                    Some(end) => break end,
                    None if self.eof || self.pending.len() >= MAX_RECORD_BYTES => {
                        break self.pending.len();
                    }
                    None => {
                        let want = self.pending.len() * 2;
                        self.fill(want).await?;
                    }
                }
            };
        }
        let mut window = self.chunk_bytes.max(header_len);
        let cut = loop {
            self.fill(window).await?;
            if self.eof && self.pending.len() <= window {
                break self.pending.len();
            }
            let scan = &self.pending[header_len..window.min(self.pending.len())];
            let found = match (&self.framing, self.group_col) {
                (Some(Framing::Delimited { quoting, .. }), Some(col))
                    if window < MAX_RECORD_BYTES =>
                {
                    last_group_start(scan, self.delimiter, *quoting, col)
                }
                (Some(Framing::Delimited { quoting: true, .. }), _) => {
                    last_record_end(scan, self.delimiter)
                }
                _ => memrchr_newline(scan),
            };
            match found.map(|end| header_len + end) {
                Some(end) => break end,
                None if header_len > 0 => break header_len,
                None if window >= MAX_RECORD_BYTES => {
                    let scan = &self.pending[..window.min(self.pending.len())];
                    break memrchr_newline(scan).unwrap_or(scan.len());
                }
                None => window = window.saturating_mul(2),
            }
        };
        let rest = self.pending.split_off(cut);
        let bytes = std::mem::replace(&mut self.pending, rest);
        if self.pending.is_empty() {
            // Is this the last chunk?
            self.fill(1).await?;
        }
        let lines_in_chunk = memchr::memchr_iter(b'\n', &bytes).count() as u64;
        let body = decode(bytes, self.decoding.unwrap_or(Decoding::Utf8));
        self.chunks += 1;
        let last = self.eof && self.pending.is_empty();
        let chunk = if first {
            if let Some(Framing::Delimited {
                quoting,
                skip_lines,
                ..
            }) = &self.framing
            {
                let end = header_end(body.as_bytes(), *skip_lines, *quoting, self.delimiter)
                    .unwrap_or(body.len());
                self.prefix = body[..end].to_string();
                if !self.prefix.ends_with('\n') {
                    self.prefix.push('\n');
                }
                self.prefix_lines = self.prefix.matches('\n').count() as u64;
            }
            ChunkText {
                text: body,
                line_shift: 0,
                first: true,
                last,
            }
        } else {
            let mut text = String::with_capacity(self.prefix.len() + body.len());
            text.push_str(&self.prefix);
            text.push_str(&body);
            ChunkText {
                text,
                line_shift: self.lines_before - self.prefix_lines,
                first: false,
                last,
            }
        };
        self.lines_before += lines_in_chunk;
        tracing::trace!(file = %self.name, chunk = self.chunks, bytes = chunk.text.len(), "chunk");
        Ok(Some(chunk))
    }
}

impl ChunkReader {
    fn format_error(&self, message: String) -> IngestError {
        IngestError::Format {
            file: self.name.clone(),
            message,
        }
    }

    /// The next chunk of a [`Framing::JsonRecords`] document: `[` + whole records + `]`.
    async fn next_json_chunk(&mut self, first: bool) -> Result<Option<ChunkText>> {
        if first {
            let start = loop {
                match json_records_start(&self.pending) {
                    Some(start) => break start,
                    None if self.eof || self.pending.len() >= MAX_RECORD_BYTES => {
                        return Err(self.format_error(
                            "expected a JSON array of records or a page object with a `records` \
                             array"
                                .into(),
                        ));
                    }
                    None => {
                        let want = self.pending.len() * 2;
                        self.fill(want).await?;
                    }
                }
            };
            self.pending.drain(..start);
        }
        if self.json_done {
            return Ok(None);
        }
        let mut window = self.chunk_bytes;
        let (cut, records, end) = loop {
            self.fill(window).await?;
            let scan = &self.pending[..window.min(self.pending.len())];
            let found = json_records_cut(scan);
            match found {
                (Some(cut), records, end) if end || window >= MAX_RECORD_BYTES || records > 0 => {
                    break (cut, records, end);
                }
                _ if self.eof && self.pending.len() <= window => {
                    return Err(self.format_error(format!(
                        "the JSON document ends inside its records array (after record {}); \
                         the export is truncated: download it again",
                        self.lines_before
                    )));
                }
                _ if window >= MAX_RECORD_BYTES => {
                    return Err(self.format_error(format!(
                        "record {} is longer than {} MiB",
                        self.lines_before + 1,
                        MAX_RECORD_BYTES >> 20
                    )));
                }
                _ => window = window.saturating_mul(2),
            }
        };
        let rest = self.pending.split_off(cut + 1);
        let mut bytes = std::mem::replace(&mut self.pending, rest);
        bytes.pop(); // the `,` or `]` after the last record
        let mut text = String::with_capacity(bytes.len() + 2);
        text.push('[');
        text.push_str(&decode(bytes, self.decoding.unwrap_or(Decoding::Utf8)));
        text.push(']');
        if end {
            self.json_done = true;
        } else if self.pending.is_empty() {
            self.fill(1).await?;
        }
        self.chunks += 1;
        let chunk = ChunkText {
            text,
            line_shift: self.lines_before,
            first,
            last: self.json_done,
        };
        self.lines_before += records;
        Ok(Some(chunk))
    }
}

/// JSON scanning state: nesting depth below the records array, inside a string, after
/// a backslash in a string.
#[derive(Default)]
struct JsonScan {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl JsonScan {
    /// Advances over `b`; returns whether `b` is structural (outside strings).
    fn step(&mut self, b: u8) -> bool {
        if self.in_string {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return false;
        }
        match b {
            b'"' => self.in_string = true,
            b'[' | b'{' => self.depth += 1,
            b']' | b'}' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        true
    }
}

/// Where the records start in a JSON document: after its opening `[`, or after the `[`
/// of the `records` value of its top-level object. `None`: not (yet) found.
fn json_records_start(bytes: &[u8]) -> Option<usize> {
    let first = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    match bytes[first] {
        b'[' => return Some(first + 1),
        b'{' => {}
        _ => return None,
    }
    let mut scan = JsonScan::default();
    let mut key_start = 0;
    let mut last_key: &[u8] = b"";
    for (i, &b) in bytes.iter().enumerate().skip(first) {
        let depth = scan.depth;
        let was_string = scan.in_string;
        let structural = scan.step(b);
        if depth == 1 && !was_string && scan.in_string {
            key_start = i + 1;
        } else if depth == 1 && was_string && !scan.in_string {
            last_key = &bytes[key_start..i];
        } else if structural && depth == 1 && b == b'[' && last_key == b"records" {
            return Some(i + 1);
        }
    }
    None
}

/// In bytes that start inside a records array on a record boundary: the position of
/// the last `,` between records (or of the closing `]`), the number of records before
/// it, and whether it is the closing `]`.
fn json_records_cut(bytes: &[u8]) -> (Option<usize>, u64, bool) {
    let mut scan = JsonScan::default();
    let mut cut = None;
    let mut records = 0;
    let mut content = false;
    for (i, &b) in bytes.iter().enumerate() {
        let depth = scan.depth;
        let structural = scan.step(b);
        if structural && depth == 0 && b == b',' {
            cut = Some(i);
            records += 1;
            content = false;
        } else if structural && depth == 0 && b == b']' {
            if content {
                records += 1;
            }
            return (Some(i), records, true);
        } else if !b.is_ascii_whitespace() {
            content = true;
        }
    }
    (cut, records, false)
}

fn decode(bytes: Vec<u8>, decoding: Decoding) -> String {
    match decoding {
        Decoding::Utf8 => String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        Decoding::Windows1251 => encoding_rs::WINDOWS_1251
            .decode_without_bom_handling(&bytes)
            .0
            .into_owned(),
    }
}

/// The position after the last `\n`.
fn memrchr_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memrchr(b'\n', bytes).map(|i| i + 1)
}

/// CSV field states, as the `csv` crate reads them: a quote opens a quoted field only
/// at the start of a field; `""` inside one is an escaped quote.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

fn step(state: State, b: u8, delimiter: u8) -> (State, bool) {
    match (state, b) {
        (State::Quoted, b'"') => (State::QuoteInQuoted, false),
        (State::Quoted, _) => (State::Quoted, false),
        (State::QuoteInQuoted, b'"') => (State::Quoted, false),
        (State::FieldStart, b'"') => (State::Quoted, false),
        (_, b'\n') => (State::FieldStart, true),
        (_, d) if d == delimiter => (State::FieldStart, false),
        _ => (State::Unquoted, false),
    }
}

/// The position after the last record end (`\n` outside quotes) of quoted delimited
/// bytes that start on a record boundary: the states of [`step`], but jumping from one
/// quote or line end to the next with `memchr` instead of visiting every byte (a quote
/// opens a quoted field only at a field's start; `""` inside one is an escaped quote).
fn last_record_end(bytes: &[u8], delimiter: u8) -> Option<usize> {
    // The lines before the first quote are records of their own: the scan starts on the
    // line of the first quote, and without a quote the last line end is the answer. A
    // chunk of message events has no quote, and the scan that stopped at every line end
    // took 1.4% of their ingest CPU at 1M customers.
    let Some(first_quote) = memchr::memchr(b'"', bytes) else {
        return memrchr_newline(bytes);
    };
    let start = memrchr_newline(&bytes[..first_quote]).unwrap_or(0);
    let mut last = (start > 0).then_some(start);
    each_record_end(&bytes[start..], delimiter, |end| last = Some(start + end));
    last
}

/// Calls `found` with the position after every record end (`\n` outside quotes) of
/// quoted delimited bytes that start on a record boundary ([`last_record_end`]).
fn each_record_end(bytes: &[u8], delimiter: u8, mut found: impl FnMut(usize)) {
    let mut at = 0;
    while at < bytes.len() {
        let Some(next) = memchr::memchr2(b'"', b'\n', &bytes[at..]) else {
            break;
        };
        let p = at + next;
        if bytes[p] == b'\n' {
            found(p + 1);
            at = p + 1;
            continue;
        }
        at = p + 1;
        let field_start = p == 0 || bytes[p - 1] == delimiter || bytes[p - 1] == b'\n';
        if !field_start {
            continue; // a quote inside an unquoted field is text
        }
        // Inside a quoted field until a quote not followed by another quote.
        loop {
            let Some(q) = memchr::memchr(b'"', &bytes[at..]) else {
                return; // the field runs past the end: no record end after it
            };
            let q = at + q;
            if bytes.get(q + 1) == Some(&b'"') {
                at = q + 2;
            } else {
                at = q + 1;
                break;
            }
        }
    }
}

/// The start of the last record of delimited bytes (starting on a record boundary)
/// whose `col` value differs from the record before it, among the whole records: the
/// cut that keeps groups of records together ([`Framing::Delimited`]'s `group_by`).
/// Usually a few records from the end: orders have a few rows each.
fn last_group_start(bytes: &[u8], delimiter: u8, quoting: bool, col: usize) -> Option<usize> {
    let mut ends = vec![];
    match quoting {
        true => each_record_end(bytes, delimiter, |end| ends.push(end)),
        false => ends.extend(memchr::memchr_iter(b'\n', bytes).map(|p| p + 1)),
    }
    let start = |k: usize| if k == 0 { 0 } else { ends[k - 1] };
    let value = |k: usize| field_value(&bytes[start(k)..ends[k]], col, delimiter, quoting);
    let mut later = None;
    for k in (1..ends.len()).rev() {
        let this = later.take().unwrap_or_else(|| value(k));
        let before = value(k - 1);
        if this != before {
            return Some(start(k));
        }
        later = Some(before);
    }
    None
}

/// The value of field `col` of the record at the start of `record` as the parser
/// reads it (quotes removed, `""` unescaped, blanks trimmed as `str::trim` does when
/// the value is UTF-8, ASCII blanks otherwise), or `None` when the record ends first.
fn field_value(record: &[u8], col: usize, delimiter: u8, quoting: bool) -> Option<Vec<u8>> {
    let mut state = State::FieldStart;
    let mut field = 0;
    let mut value = vec![];
    for &b in record {
        let (next, ends) = match quoting {
            true => step(state, b, delimiter),
            false => match b {
                b'\n' => (State::FieldStart, true),
                d if d == delimiter => (State::FieldStart, false),
                _ => (State::Unquoted, false),
            },
        };
        let separator = matches!(next, State::FieldStart);
        if field == col {
            if separator {
                return Some(match std::str::from_utf8(&value) {
                    Ok(text) => text.trim().as_bytes().to_vec(),
                    Err(_) => value.trim_ascii().to_vec(),
                });
            }
            let quote_mark = matches!(
                (state, next),
                (State::FieldStart, State::Quoted) | (State::Quoted, State::QuoteInQuoted)
            );
            if !quote_mark {
                value.push(b);
            }
        }
        if ends {
            return None;
        }
        if separator {
            field += 1;
        }
        state = next;
    }
    None
}

/// The length of the title lines and the header record at the start of a file, or
/// `None` while the bytes end before the header does.
fn header_end(bytes: &[u8], skip_lines: usize, quoting: bool, delimiter: u8) -> Option<usize> {
    let mut pos = 0;
    for _ in 0..skip_lines {
        pos += bytes[pos..].iter().position(|b| *b == b'\n')? + 1;
    }
    if !quoting {
        return bytes[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| pos + i + 1);
    }
    let mut state = State::FieldStart;
    for (i, &b) in bytes[pos..].iter().enumerate() {
        let (next, ends) = step(state, b, delimiter);
        state = next;
        if ends {
            return Some(pos + i + 1);
        }
    }
    None
}

/// A byte stream over an in-memory buffer, in pieces of `piece` bytes (tests).
pub fn stream_of(bytes: Vec<u8>, piece: usize) -> BoxStream<'static, Result<Bytes>> {
    let pieces: Vec<Result<Bytes>> = bytes
        .chunks(piece.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(pieces).boxed()
}

/// A byte stream over a local file, read in pieces of 4 MiB.
pub fn file_stream(path: std::path::PathBuf, name: String) -> BoxStream<'static, Result<Bytes>> {
    use std::io::Read;
    let opened = std::fs::File::open(&path);
    futures::stream::try_unfold(Some(opened), move |state| {
        let name = name.clone();
        async move {
            let Some(opened) = state else {
                return Ok(None);
            };
            let mut file = opened.map_err(|e| IngestError::Read {
                file: name.clone(),
                message: e.to_string(),
            })?;
            let mut buf = vec![0u8; 4 << 20];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(IngestError::Read {
                            file: name,
                            message: e.to_string(),
                        });
                    }
                }
            }
            if filled == 0 {
                return Ok(None);
            }
            buf.truncate(filled);
            Ok(Some((Bytes::from(buf), Some(Ok(file)))))
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`last_record_end`] by visiting every byte with [`step`] (the reference).
    fn last_record_end_by_states(bytes: &[u8], delimiter: u8) -> Option<usize> {
        let mut state = State::FieldStart;
        let mut last = None;
        for (i, &b) in bytes.iter().enumerate() {
            let (next, ends) = step(state, b, delimiter);
            state = next;
            if ends {
                last = Some(i + 1);
            }
        }
        last
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// The memchr scan finds the record end the byte-by-byte states find, on text
        /// made of quotes, line ends, delimiters and letters.
        #[test]
        fn record_end_scan_equals_the_states(text in "[\"\n,;a]{0,40}|[\n,a]{0,30}\"[\"\n,;a]{0,30}") {
            for delimiter in [b',', b';'] {
                proptest::prop_assert_eq!(
                    last_record_end(text.as_bytes(), delimiter),
                    last_record_end_by_states(text.as_bytes(), delimiter),
                    "{:?}", text
                );
            }
        }
    }

    fn chunks(text: &[u8], framing: Framing, size: usize, piece: usize) -> Vec<ChunkText> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut r = ChunkReader::with_chunk_bytes(
                "t",
                stream_of(text.to_vec(), piece),
                TextEncoding::Auto,
                size,
            );
            let mut out = vec![];
            while let Some(c) = r.next_chunk(|_| framing.clone()).await.expect("chunk") {
                out.push(c);
            }
            out
        })
    }

    #[test]
    fn csv_chunks_end_outside_quotes_and_repeat_the_header() {
        let text = "title\na,b\n1,\"x\ny\"\n2,q\"uote\n3,\"\"\"\n\"\n4,z";
        let framing = Framing::Delimited {
            delimiter: None,
            quoting: true,
            skip_lines: 1,
            group_by: None,
        };
        for size in [1, 5, 12, 100] {
            for piece in [1, 3, 1000] {
                let cs = chunks(text.as_bytes(), framing.clone(), size, piece);
                assert!(cs[0].first && cs.last().is_some_and(|c| c.last));
                // Every chunk parses to whole records whose file lines are exact.
                let mut lines = vec![];
                for c in &cs {
                    let opts = crate::text::DelimitedOptions {
                        delimiter: None,
                        quoting: true,
                        skip_lines: 1,
                    };
                    let mut d = crate::text::Delimited::open(&c.text, opts).expect("header");
                    assert_eq!(d.header.names, ["a", "b"]);
                    while let Some(r) = d.next_record() {
                        let r = r.expect("record");
                        lines.push((r.line + c.line_shift, r.field(1).unwrap_or("").to_string()));
                    }
                }
                assert_eq!(
                    lines,
                    [
                        (3, "x\ny".to_string()),
                        (5, "q\"uote".to_string()),
                        (6, "\"\n".to_string()),
                        (8, "z".to_string())
                    ],
                    "size {size}, piece {piece}"
                );
            }
        }
    }

    #[test]
    fn grouped_chunks_keep_each_group_whole() {
        // Groups by `name` (the second column): quoted, escaped, padded, multi-line.
        let text = "id,name,v\n1,a,x\n2, a ,\"y\nz\"\n3,\"b,\"\"q\"\"\",w\n4,\"b,\"\"q\"\"\",\n5,c,\r\n6,d,u\n7,d,\"\"\n8,e,t";
        let framing = Framing::Delimited {
            delimiter: None,
            quoting: true,
            skip_lines: 0,
            group_by: Some("name"),
        };
        for size in [1, 7, 20, 100] {
            for piece in [1, 4, 1000] {
                let mut groups: Vec<Vec<String>> = vec![];
                let mut ids = vec![];
                for c in chunks(text.as_bytes(), framing.clone(), size, piece) {
                    let opts = crate::text::DelimitedOptions {
                        delimiter: None,
                        quoting: true,
                        skip_lines: 0,
                    };
                    let mut d = crate::text::Delimited::open(&c.text, opts).expect("header");
                    let mut names = vec![];
                    while let Some(r) = d.next_record() {
                        let r = r.expect("record");
                        ids.push(r.field(0).unwrap_or("").to_string());
                        names.push(r.field(1).unwrap_or("").trim().to_string());
                    }
                    groups.push(names);
                }
                assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7", "8"], "size {size}");
                for pair in groups.windows(2) {
                    assert_ne!(
                        pair[0].last(),
                        pair[1].first(),
                        "size {size}, piece {piece}"
                    );
                }
            }
        }
    }

    #[test]
    fn field_values_read_as_the_parser_reads_them() {
        let value = |record: &str, col| {
            field_value(record.as_bytes(), col, b',', true)
                .map(|v| String::from_utf8(v).expect("utf8"))
        };
        assert_eq!(value("a, b ,c\n", 1).as_deref(), Some("b"));
        assert_eq!(
            value("a,\"x,\"\"y\"\"\nz\",c\n", 1).as_deref(),
            Some("x,\"y\"\nz")
        );
        assert_eq!(value("a,b\r\n", 1).as_deref(), Some("b"));
        // Trimmed as the parser's `str::trim` trims, no-break spaces included.
        assert_eq!(
            value("a,\u{a0}#1002\u{a0},c\n", 1).as_deref(),
            Some("#1002")
        );
        assert_eq!(value("a,b\n", 2), None);
        assert_eq!(value("a,\"\"\n", 1).as_deref(), Some(""));
        // Unquoted (TSV): a quote is text.
        assert_eq!(
            field_value(b"a\t\"b\tc\n", 1, b'\t', false),
            Some(b"\"b".to_vec())
        );
    }

    #[test]
    fn lines_keep_their_numbers_and_bom_and_1251_decode() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice("{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}\n".as_bytes());
        let cs = chunks(&bytes, Framing::Lines, 4, 2);
        let mut seen = vec![];
        for c in &cs {
            for (i, l) in c.text.split('\n').enumerate() {
                if !l.is_empty() {
                    seen.push((i as u64 + 1 + c.line_shift, l.to_string()));
                }
            }
        }
        assert_eq!(seen[0], (1, "{\"a\":1}".to_string()));
        assert_eq!(seen[2], (4, "{\"a\":3}".to_string()));
        let cp1251 = encoding_rs::WINDOWS_1251
            .encode("Москва\nКазань\n")
            .0
            .to_vec();
        let cs = chunks(&cp1251, Framing::Lines, 3, 5);
        let all: String = cs.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(all, "Москва\nКазань\n");
    }

    #[test]
    fn json_records_split_between_records_of_an_array_or_a_page() {
        let page = r#" {"page": 1, "note": "records", "x": {"records": [9]},
            "records": [{"a": "],\"{"}, [1, 2], 3 , {"b": {"c": [4]}}], "after": [5]}"#;
        for size in [1, 7, 1000] {
            for doc in [page, r#"[{"a": "],\"{"}, [1, 2], 3 , {"b": {"c": [4]}}]"#] {
                let cs = chunks(doc.as_bytes(), Framing::JsonRecords, size, 3);
                assert!(cs[0].first && cs.last().is_some_and(|c| c.last));
                let mut seen = vec![];
                for c in &cs {
                    let records: Vec<serde_json::Value> =
                        serde_json::from_str(&c.text).expect("a JSON array");
                    for (i, r) in records.iter().enumerate() {
                        seen.push((i as u64 + 1 + c.line_shift, r.to_string()));
                    }
                }
                let want = [r#"{"a":"],\"{"}"#, "[1,2]", "3", r#"{"b":{"c":[4]}}"#];
                let want: Vec<_> = (1..).zip(want.iter().map(|s| s.to_string())).collect();
                assert_eq!(seen, want, "size {size}");
            }
        }
        let empty = chunks(br#"{"records": []}"#, Framing::JsonRecords, 4, 1);
        assert_eq!(
            empty.iter().map(|c| c.text.as_str()).collect::<String>(),
            "[]"
        );
    }

    #[test]
    fn truncated_or_recordless_json_is_an_error_naming_the_file() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        for (doc, wanted) in [
            (&br#"[{"a": 1}, {"b": "#[..], "truncated"),
            (&br#"{"page": 1}"#[..], "records"),
            (&b"callId;date"[..], "records"),
        ] {
            let err = rt.block_on(async {
                let mut r =
                    ChunkReader::new("calls.json", stream_of(doc.to_vec(), 4), TextEncoding::Auto);
                loop {
                    match r.next_chunk(|_| Framing::JsonRecords).await {
                        Ok(Some(_)) => {}
                        Ok(None) => return None,
                        Err(e) => return Some(e.to_string()),
                    }
                }
            });
            let err = err.expect("an error");
            assert!(err.contains("calls.json") && err.contains(wanted), "{err}");
        }
    }
}
