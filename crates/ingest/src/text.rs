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

/// One record of a delimited file, borrowed from the reader until the next record.
#[derive(Debug)]
pub struct Record<'t, 'b> {
    /// 1-based physical line on which the record starts, counting every line of the file.
    pub line: u64,
    /// The record's text as in the file, without its line terminator.
    pub raw: &'t str,
    /// The fields' text: `raw` itself, or the unquoted copy of a record with quotes.
    text: &'b str,
    /// Byte range of each field in `text`.
    bounds: &'b [(usize, usize)],
}

impl Record<'_, '_> {
    /// The field at a header position; `""` when the column is absent or the row is short.
    pub fn get(&self, col: Option<usize>) -> &str {
        col.and_then(|i| self.field(i)).unwrap_or("")
    }

    /// The field at position `i`, if the record has that many.
    pub fn field(&self, i: usize) -> Option<&str> {
        let &(start, end) = self.bounds.get(i)?;
        self.text.get(start..end)
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    /// Whether the record has no field at all (never true for a record read from a file).
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
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

/// A parsed delimited file: its header, then its records one at a time
/// ([`Delimited::next_record`]).
///
/// Records are read as the `csv` crate reads them (RFC 4180 quoting, `""` inside quotes,
/// `\n`, `\r\n` or `\r` ending a record, blank lines skipped, any number of fields per
/// record). A line without a quote (or any line when quoting is off) is split in place
/// with `memchr`, without copying; only records with quotes go through `csv_core`, into a
/// buffer reused from record to record.
pub struct Delimited<'a> {
    pub header: Header,
    pub delimiter: u8,
    quoting: bool,
    text: &'a str,
    base: usize,
    /// Byte position of the next record in `text`.
    pos: usize,
    /// Physical line (1-based, in the whole file) at `pos`.
    line: u64,
    quoted: csv_core::Reader,
    /// The unquoted text of the last record read through `quoted`.
    unquoted: Vec<u8>,
    /// Field ends of the last record read through `quoted`.
    ends: Vec<usize>,
    /// Field ranges of the last record.
    bounds: Vec<(usize, usize)>,
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
        let quoted = csv_core::ReaderBuilder::new()
            .delimiter(delimiter)
            .quoting(opts.quoting)
            .build();
        let mut reader = Self {
            header: Header::new(vec![]),
            delimiter,
            quoting: opts.quoting,
            text: body,
            base,
            pos: 0,
            line: opts.skip_lines as u64 + 1,
            quoted,
            unquoted: vec![0; 1024],
            ends: vec![0; 64],
            bounds: Vec::with_capacity(64),
        };
        let names = match reader.next_record()? {
            Ok(head) => (0..head.len())
                .map(|i| head.field(i).unwrap_or("").trim().to_string())
                .collect(),
            Err(_) => return None,
        };
        reader.header = Header::new(names);
        Some(reader)
    }

    /// The number of physical lines before the body (for callers that report lines).
    pub fn base_offset(&self) -> usize {
        self.base
    }

    /// The next record, `None` at the end of the text. Blank lines are skipped. The record
    /// borrows the reader until the next call (a lending iterator, hence no `Iterator`).
    pub fn next_record(&mut self) -> Option<Result<Record<'a, '_>, BadRecord<'a>>> {
        loop {
            let bytes = &self.text.as_bytes()[self.pos..];
            // Skip blank lines, as the csv crate does.
            let blank = bytes
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .fold((0, 0), |(n, lines), &b| {
                    (n + 1, lines + u64::from(b == b'\n'))
                });
            self.pos += blank.0;
            self.line += blank.1;
            let start = self.pos;
            let rest = &self.text.as_bytes()[start..];
            if rest.is_empty() {
                return None;
            }
            let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let line = rest[..line_end]
                .strip_suffix(b"\r")
                .unwrap_or(&rest[..line_end]);
            // A quote, or a lone `\r` (a record end for the csv crate): the csv_core path.
            let plain = if self.quoting {
                memchr::memchr2(b'"', b'\r', line).is_none()
            } else {
                memchr::memchr(b'\r', line).is_none()
            };
            let end = if plain {
                self.split_plain(line);
                start + line_end
            } else {
                self.split_quoted(start)
            };
            let raw = self.raw(start, end);
            let line = self.line;
            if plain {
                // A plain record ends before its newline: no line to count.
                self.pos = end;
            } else {
                self.advance(start, end);
            }
            // A line of blanks is no record.
            if let [(from, to)] = self.bounds[..] {
                let field = if plain {
                    raw.get(from..to)
                } else {
                    std::str::from_utf8(&self.unquoted[from..to]).ok()
                };
                if field.is_some_and(|f| f.trim().is_empty()) {
                    continue;
                }
            }
            // Quotes are ASCII, so unquoting keeps valid UTF-8 valid; checked anyway, once
            // (checking it twice took 1.9% of the instructions of Shopify's ingest).
            let text = if plain {
                raw
            } else {
                match std::str::from_utf8(self.unquoted_text()) {
                    Ok(text) => text,
                    Err(e) => {
                        return Some(Err(BadRecord {
                            line,
                            raw,
                            message: e.to_string(),
                        }));
                    }
                }
            };
            return Some(Ok(Record {
                line,
                raw,
                text,
                bounds: &self.bounds,
            }));
        }
    }

    /// The unquoted fields of the last record read by [`Self::split_quoted`].
    fn unquoted_text(&self) -> &[u8] {
        &self.unquoted[..self.bounds.last().map_or(0, |b| b.1)]
    }

    /// The record's text from `start` to `end`, without its line terminator.
    fn raw(&self, start: usize, end: usize) -> &'a str {
        let text: &'a str = self.text;
        text.get(start..end.min(text.len()))
            .unwrap_or("")
            .trim_end_matches(['\r', '\n'])
    }

    /// Moves past a record, counting its lines.
    fn advance(&mut self, start: usize, end: usize) {
        let span = &self.text.as_bytes()[start..end.min(self.text.len())];
        self.line += memchr::memchr_iter(b'\n', span).count() as u64;
        self.pos = end.min(self.text.len());
    }

    /// Field ranges of a line without quotes: split at every delimiter.
    fn split_plain(&mut self, line: &[u8]) {
        self.bounds.clear();
        let mut from = 0;
        for at in memchr::memchr_iter(self.delimiter, line) {
            self.bounds.push((from, at));
            from = at + 1;
        }
        self.bounds.push((from, line.len()));
    }

    /// Reads the record at `start` with `csv_core` into `unquoted`; returns the position
    /// after it (its terminator included).
    fn split_quoted(&mut self, start: usize) -> usize {
        use csv_core::ReadRecordResult as R;
        self.quoted.reset();
        let bytes = self.text.as_bytes();
        let (mut read, mut out, mut nends) = (start, 0, 0);
        loop {
            let (result, nin, nout, nend) = self.quoted.read_record(
                &bytes[read..],
                &mut self.unquoted[out..],
                &mut self.ends[nends..],
            );
            read += nin;
            out += nout;
            nends += nend;
            match result {
                R::InputEmpty => continue, // the next call sees the end of the text
                R::OutputFull => self.unquoted.resize(self.unquoted.len() * 2, 0),
                R::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                R::Record | R::End => break,
            }
        }
        self.bounds.clear();
        let mut from = 0;
        for &end in &self.ends[..nends] {
            self.bounds.push((from, end));
            from = end;
        }
        if self.bounds.is_empty() {
            self.bounds.push((0, 0));
        }
        read.max(start + 1)
    }
}

/// A record that could not be split (a quoted field that is not valid text once unquoted).
#[derive(Debug)]
pub struct BadRecord<'a> {
    pub line: u64,
    pub raw: &'a str,
    pub message: String,
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
/// backslash escapes). `None` when the text is not an array literal. Items are
/// borrowed from `raw` unless they hold an escape.
pub fn clickhouse_array(raw: &str) -> Option<Vec<Cow<'_, str>>> {
    let mut rest = raw.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut out = vec![];
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if let Some(quoted) = rest.strip_prefix('\'') {
            // Up to the closing quote; a backslash takes the next character as it is.
            let mut unescaped: Option<String> = None;
            let mut plain_from = 0;
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '\\') => {
                        let (_, next) = chars.next()?;
                        let item = unescaped.get_or_insert_with(String::new);
                        item.push_str(&quoted[plain_from..i]);
                        item.push(next);
                        plain_from = i + 1 + next.len_utf8();
                    }
                    (i, '\'') => break i,
                    _ => {}
                }
            };
            out.push(match unescaped {
                None => Cow::Borrowed(&quoted[..end]),
                Some(mut item) => {
                    item.push_str(&quoted[plain_from..end]);
                    Cow::Owned(item)
                }
            });
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let item = rest[..end].trim();
            if item.is_empty() {
                return None;
            }
            out.push(Cow::Borrowed(item));
            rest = &rest[end..];
        }
        match rest.chars().next() {
            None => break,
            Some(',') => rest = &rest[1..],
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
        let b = d.header.col("b");
        let r1 = d.next_record().unwrap().unwrap();
        assert_eq!((r1.line, r1.raw), (3, "1,\"multi\nline\""));
        assert_eq!(r1.get(b), "multi\nline");
        let r2 = d.next_record().unwrap().unwrap();
        assert_eq!((r2.line, r2.raw), (6, "2,x"));
        assert!(d.next_record().is_none());
    }

    /// Records as the `csv` crate reads them (the reference): physical line, fields.
    fn records_by_csv_crate(text: &str, delimiter: u8, quoting: bool) -> Vec<(u64, Vec<String>)> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .quoting(quoting)
            .flexible(true)
            .has_headers(false)
            .from_reader(text.as_bytes());
        let mut out = vec![];
        let mut record = csv::StringRecord::new();
        loop {
            let start = reader.position().clone();
            if !reader.read_record(&mut record).expect("valid UTF-8") {
                break;
            }
            let span = &text[start.byte() as usize..];
            let blank = span.len() - span.trim_start_matches(['\r', '\n']).len();
            let line = start.line() + span[..blank].matches('\n').count() as u64;
            if record.len() == 1 && record[0].trim().is_empty() {
                continue;
            }
            out.push((line, record.iter().map(String::from).collect()));
        }
        out
    }

    fn records_by_delimited(text: &str, delimiter: u8, quoting: bool) -> Vec<(u64, Vec<String>)> {
        let opts = DelimitedOptions {
            delimiter: Some(delimiter),
            quoting,
            skip_lines: 0,
        };
        let mut out = vec![];
        let Some(mut d) = Delimited::open(text, opts) else {
            return out;
        };
        // The header is the first record of the reference (its line is not kept).
        out.push((0, d.header.names.clone()));
        while let Some(r) = d.next_record() {
            let r = r.expect("record");
            let fields = (0..r.len()).map(|i| r.get(Some(i)).to_string()).collect();
            out.push((r.line, fields));
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// The splitter reads exactly the records, fields and lines the csv crate reads,
        /// on text made of quotes, line ends, delimiters, blanks and letters.
        #[test]
        fn splits_records_as_the_csv_crate(text in "[\"\r\n,;\t aé]{0,60}") {
            for (delimiter, quoting) in [(b',', true), (b';', true), (b'\t', false)] {
                let mut expected = records_by_csv_crate(&text, delimiter, quoting);
                if let Some(head) = expected.first_mut() {
                    // Header names are trimmed.
                    *head = (0, head.1.iter().map(|n| n.trim().to_string()).collect());
                }
                let got = records_by_delimited(&text, delimiter, quoting);
                proptest::prop_assert_eq!(got, expected, "{:?} {:?}", text, delimiter as char);
            }
        }
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
        let r = d.next_record().unwrap().unwrap();
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
        // Escapes of any character, blanks kept inside quotes and trimmed outside.
        assert_eq!(
            clickhouse_array(r"[ 'x\дy\\' , ' a ' , 7 ]"),
            Some(vec!["xдy\\".into(), " a ".into(), "7".into()])
        );
        assert_eq!(clickhouse_array(r"['a\"), None);
        assert_eq!(clickhouse_array("['a' 'b']"), None);
    }

    #[test]
    fn tsv_unescape() {
        assert_eq!(unescape_tsv(r"a\tb\\c"), "a\tb\\c");
        assert_eq!(unescape_tsv("plain"), "plain");
    }
}
