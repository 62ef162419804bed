//! Text of an export: encoding detection (UTF-8 with or without BOM, Windows-1251),
//! delimiter detection, and delimited records with the exact physical line they start on
//! and their raw text (for quarantine).

use foldhash::HashMap;
use std::borrow::Cow;

use crmflow_core::config::TextEncoding;

/// Decodes export bytes to text. `Auto` takes UTF-8 when the bytes are valid UTF-8 and
/// Windows-1251 otherwise (a Russian export that is not UTF-8 is Windows-1251).
/// A UTF-8 BOM is removed.
pub fn decode(bytes: &[u8], encoding: TextEncoding) -> Cow<'_, str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match encoding {
        TextEncoding::Windows1251 => {
            encoding_rs::WINDOWS_1251
                .decode_without_bom_handling(bytes)
                .0
        }
        TextEncoding::Utf8 => String::from_utf8_lossy(bytes),
        TextEncoding::Auto => match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => {
                encoding_rs::WINDOWS_1251
                    .decode_without_bom_handling(bytes)
                    .0
            }
        },
    }
}

/// Picks the delimiter of a header line among `,`, `;` and TAB: the most frequent one
/// outside quotes (`,` when none occurs).
pub fn detect_delimiter(header_line: &str) -> u8 {
    let (mut comma, mut semi, mut tab, mut quoted) = (0, 0, 0, false);
    for b in header_line.bytes() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => comma += 1,
            b';' if !quoted => semi += 1,
            b'\t' if !quoted => tab += 1,
            _ => {}
        }
    }
    if tab >= semi && tab >= comma && tab > 0 {
        b'\t'
    } else if semi > comma {
        b';'
    } else {
        b','
    }
}

/// The header of a delimited file: column name -> position. Names are trimmed.
#[derive(Debug, Clone)]
pub struct Header {
    pub names: Vec<String>,
    positions: HashMap<String, usize>,
}

impl Header {
    pub fn new(names: Vec<String>) -> Self {
        let mut positions = HashMap::default();
        for (i, n) in names.iter().enumerate() {
            positions.entry(n.clone()).or_insert(i);
        }
        Self { names, positions }
    }

    /// Position of a column, by exact header name.
    pub fn col(&self, name: &str) -> Option<usize> {
        self.positions.get(name).copied()
    }

    /// The names of `required` missing from this header, comma-separated; `None` if all present.
    pub fn missing(&self, required: &[&str]) -> Option<String> {
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|r| self.col(r).is_none())
            .collect();
        (!missing.is_empty()).then(|| {
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

/// One record of a delimited file.
#[derive(Debug)]
pub struct Record<'a> {
    /// 1-based physical line on which the record starts, counting every line of the file.
    pub line: u64,
    /// The record's text as in the file, without its line terminator.
    pub raw: &'a str,
    pub fields: csv::StringRecord,
}

impl Record<'_> {
    /// The field at a header position; `""` when the column is absent or the row is short.
    pub fn get(&self, col: Option<usize>) -> &str {
        col.and_then(|i| self.fields.get(i)).unwrap_or("")
    }
}

/// How to read a delimited file.
#[derive(Debug, Clone, Copy)]
pub struct DelimitedOptions {
    pub delimiter: Option<u8>,
    /// CSV quoting (`"`) is honoured; TSV exports (Metrica, Direct) have none.
    pub quoting: bool,
    /// Physical lines to skip before the header (a report title line).
    pub skip_lines: usize,
}

/// A parsed delimited file: its header and an iterator over its records.
pub struct Delimited<'a> {
    pub header: Header,
    pub delimiter: u8,
    text: &'a str,
    base: usize,
    line_offset: u64,
    reader: csv::Reader<&'a [u8]>,
    /// Bytes and fields of the last record read.
    last_size: (usize, usize),
}

impl<'a> Delimited<'a> {
    /// Opens the text; `None` when there is no header line at all (an empty file).
    pub fn open(text: &'a str, opts: DelimitedOptions) -> Option<Self> {
        let mut base = 0;
        for _ in 0..opts.skip_lines {
            base += text[base..].find('\n').map(|i| i + 1)?;
        }
        let body = &text[base..];
        let first_line = body.lines().next()?;
        let delimiter = opts
            .delimiter
            .unwrap_or_else(|| detect_delimiter(first_line));
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .quoting(opts.quoting)
            .flexible(true)
            .has_headers(false)
            .from_reader(body.as_bytes());
        let mut head = csv::StringRecord::new();
        if !reader.read_record(&mut head).ok()? {
            return None;
        }
        let names = head.iter().map(|s| s.trim().to_string()).collect();
        Some(Self {
            header: Header::new(names),
            delimiter,
            text: body,
            base,
            line_offset: opts.skip_lines as u64,
            reader,
            last_size: (0, 0),
        })
    }

    /// The number of physical lines before the body (for callers that report lines).
    pub fn base_offset(&self) -> usize {
        self.base
    }
}

/// A record that the CSV reader could not split (for example an unterminated quote).
#[derive(Debug)]
pub struct BadRecord<'a> {
    pub line: u64,
    pub raw: &'a str,
    pub message: String,
}

impl<'a> Iterator for Delimited<'a> {
    type Item = Result<Record<'a>, BadRecord<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let start = self.reader.position().clone();
            // Sized like the previous record: no regrowing field by field.
            let mut fields = csv::StringRecord::with_capacity(self.last_size.0, self.last_size.1);
            let result = self.reader.read_record(&mut fields);
            let end = self.reader.position().byte() as usize;
            let span = self
                .text
                .get(start.byte() as usize..end.min(self.text.len()))
                .unwrap_or("");
            // The reader skips blank lines; the record starts after them.
            let body = span.trim_start_matches(['\r', '\n']);
            let skipped = span[..span.len() - body.len()].matches('\n').count() as u64;
            let raw = body.trim_end_matches(['\r', '\n']);
            let line = start.line() + skipped + self.line_offset;
            return match result {
                Ok(false) => None,
                // A blank line is no record.
                Ok(true)
                    if fields.len() == 1 && fields.get(0).is_some_and(|f| f.trim().is_empty()) =>
                {
                    continue;
                }
                Ok(true) => {
                    self.last_size = (fields.as_slice().len(), fields.len());
                    Some(Ok(Record { line, raw, fields }))
                }
                Err(e) => {
                    if end as u64 <= start.byte() {
                        return None; // no progress: stop rather than loop
                    }
                    Some(Err(BadRecord {
                        line,
                        raw,
                        message: e.to_string(),
                    }))
                }
            };
        }
    }
}

/// A TSV field unescaped ([`unescape_tsv`]) and normalised ([`crmflow_core::normalize::text`]),
/// borrowed from the record when it has no escapes.
pub fn tsv_text(raw: &str) -> Option<Cow<'_, str>> {
    match unescape_tsv(raw) {
        Cow::Borrowed(s) => crmflow_core::normalize::text(s).map(Cow::Borrowed),
        Cow::Owned(s) => crmflow_core::normalize::text(&s).map(|t| Cow::Owned(t.to_string())),
    }
}

/// Undoes the escapes of a ClickHouse/Metrica TSV field (`\t`, `\n`, `\\`, `\'`, ...).
pub fn unescape_tsv(value: &str) -> Cow<'_, str> {
    if !value.contains('\\') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// Parses a ClickHouse array literal: `[]`, `[1,2]`, `['a','b']` (single quotes,
/// backslash escapes). `None` when the text is not an array literal.
pub fn clickhouse_array(raw: &str) -> Option<Vec<String>> {
    let inner = raw.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut out = vec![];
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut item = String::new();
        if c == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => item.push(chars.next()?),
                    '\'' => {
                        closed = true;
                        break;
                    }
                    other => item.push(other),
                }
            }
            if !closed {
                return None;
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            item = item.trim().to_string();
            if item.is_empty() {
                return None;
            }
        }
        out.push(item);
        match chars.next() {
            None => break,
            Some(',') => continue,
            Some(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_utf8_bom_and_windows_1251() {
        assert_eq!(decode(b"\xEF\xBB\xBFcallId", TextEncoding::Auto), "callId");
        let cp1251 = encoding_rs::WINDOWS_1251.encode("Москва").0;
        assert_eq!(decode(&cp1251, TextEncoding::Auto), "Москва");
        assert_eq!(decode("Москва".as_bytes(), TextEncoding::Auto), "Москва");
        assert_eq!(decode(&cp1251, TextEncoding::Windows1251), "Москва");
    }

    #[test]
    fn detects_delimiters() {
        assert_eq!(detect_delimiter("a;b;c"), b';');
        assert_eq!(detect_delimiter("a,b,c"), b',');
        assert_eq!(detect_delimiter("a\tb\tc"), b'\t');
        assert_eq!(detect_delimiter("\"a;x\",b,c"), b',');
        assert_eq!(detect_delimiter("single"), b',');
    }

    #[test]
    fn records_know_their_physical_line_and_raw_text() {
        let text = "title line\na,b\n1,\"multi\nline\"\n\n2,x\n";
        let opts = DelimitedOptions {
            delimiter: None,
            quoting: true,
            skip_lines: 1,
        };
        let mut d = Delimited::open(text, opts).unwrap();
        assert_eq!(d.header.names, vec!["a", "b"]);
        let r1 = d.next().unwrap().unwrap();
        assert_eq!((r1.line, r1.raw), (3, "1,\"multi\nline\""));
        assert_eq!(r1.get(d.header.col("b")), "multi\nline");
        let r2 = d.next().unwrap().unwrap();
        assert_eq!((r2.line, r2.raw), (6, "2,x"));
        assert!(d.next().is_none());
    }

    #[test]
    fn tsv_has_no_quoting() {
        let text = "a\tb\n\"x\ty\n";
        let opts = DelimitedOptions {
            delimiter: None,
            quoting: false,
            skip_lines: 0,
        };
        let mut d = Delimited::open(text, opts).unwrap();
        let r = d.next().unwrap().unwrap();
        assert_eq!(r.get(Some(0)), "\"x");
    }

    #[test]
    fn clickhouse_arrays() {
        assert_eq!(clickhouse_array("[]"), Some(vec![]));
        assert_eq!(
            clickhouse_array("[1,2]"),
            Some(vec!["1".into(), "2".into()])
        );
        assert_eq!(
            clickhouse_array("['1001','1002']"),
            Some(vec!["1001".into(), "1002".into()])
        );
        assert_eq!(
            clickhouse_array(r"['a\'b', 'c,d']"),
            Some(vec!["a'b".into(), "c,d".into()])
        );
        assert_eq!(
            clickhouse_array("[1234.5,99]"),
            Some(vec!["1234.5".into(), "99".into()])
        );
        assert_eq!(clickhouse_array("['open"), None);
        assert_eq!(clickhouse_array("1,2"), None);
        assert_eq!(clickhouse_array("[1,,2]"), None);
    }

    #[test]
    fn tsv_unescape() {
        assert_eq!(unescape_tsv(r"a\tb\\c"), "a\tb\\c");
        assert_eq!(unescape_tsv("plain"), "plain");
    }
}
