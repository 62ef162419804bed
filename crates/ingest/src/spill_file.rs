//! One spill file: record batches appended, then read back by index. Each batch is one
//! Arrow IPC message, its body stored as one LZ4 block (or as it is, with
//! `ingest.spill_compression = "none"`); where each batch is in the file is kept in
//! memory, so the file is only the batches, one after the other.
//!
//! Not Arrow's IPC file with its LZ4 compression: that compresses every buffer of every
//! column as an LZ4 frame of its own, and a batch bound for a date store (about a
//! thousand rows) has dozens of small buffers. Each frame sets up a 16 KiB match table
//! to write and zeroes a 64 KiB block buffer to read, which cost more than compressing
//! the bytes: LZ4 took 11.7% of the CPU time of the messages' ingest (7.5% of it to
//! decompress).

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::buffer::{Buffer, MutableBuffer};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::FileDecoder;
use arrow::ipc::writer::{
    DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, write_message,
};
use arrow::ipc::{Block, MetadataVersion};

/// Where one batch is in its file: its IPC message's metadata as it is, then the body
/// (one LZ4 block when compressed).
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Its first byte in the file, and how many bytes it takes there.
    offset: u64,
    stored: usize,
    /// The length of its IPC message, and of the message's metadata and body.
    message: usize,
    meta: usize,
    body: usize,
}

/// Appends batches to a new spill file.
pub struct SpillWriter {
    path: PathBuf,
    file: BufWriter<File>,
    schema: SchemaRef,
    compress: bool,
    entries: Vec<Entry>,
    written: u64,
}

impl SpillWriter {
    /// Creates the file `path` (through a buffer of `buffer` bytes) for batches of
    /// `schema`, each compressed as one LZ4 block when `compress`.
    pub fn create(
        path: &Path,
        schema: SchemaRef,
        compress: bool,
        buffer: usize,
    ) -> Result<Self, ArrowError> {
        Ok(SpillWriter {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(buffer, File::create(path)?),
            schema,
            compress,
            entries: vec![],
            written: 0,
        })
    }

    /// Appends one batch (of the file's schema, without dictionary columns).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        if batch.schema() != self.schema {
            return Err(ArrowError::SchemaError(format!(
                "a batch of schema {} in a spill file of schema {}",
                batch.schema(),
                self.schema
            )));
        }
        let options = IpcWriteOptions::default();
        let (dictionaries, mut encoded) = IpcDataGenerator::default().encode(
            batch,
            &mut DictionaryTracker::new(false),
            &options,
            &mut IpcWriteContext::default(),
        )?;
        if !dictionaries.is_empty() {
            return Err(ArrowError::NotYetImplemented(
                "dictionary columns in a spill file".into(),
            ));
        }
        // The message's metadata as it is, then its body (compressed or not) from the
        // encoder's buffer: not the whole message copied into one buffer first.
        let body = std::mem::take(&mut encoded.arrow_data);
        let mut header = Vec::with_capacity(encoded.ipc_message.len() + 16);
        let (meta, _) = write_message(&mut header, encoded, &options)?;
        if meta != header.len() {
            return Err(ArrowError::IpcError(format!(
                "an IPC header of {} bytes said to take {meta}",
                header.len()
            )));
        }
        self.file.write_all(&header)?;
        let stored_body = match self.compress {
            true => {
                let compressed = lz4_flex::block::compress(&body);
                self.file.write_all(&compressed)?;
                compressed.len()
            }
            false => {
                self.file.write_all(&body)?;
                body.len()
            }
        };
        let stored = meta + stored_body;
        self.entries.push(Entry {
            offset: self.written,
            stored,
            message: meta + body.len(),
            meta,
            body: body.len(),
        });
        self.written += stored as u64;
        Ok(())
    }

    /// The number of batches written.
    pub fn batches(&self) -> usize {
        self.entries.len()
    }

    /// Flushes the file; its batches can then be read.
    pub fn finish(mut self) -> Result<SpillReader, ArrowError> {
        self.file.flush()?;
        Ok(SpillReader {
            decoder: FileDecoder::new(self.schema, MetadataVersion::V5),
            path: self.path,
            compressed: self.compress,
            entries: self.entries,
            file: None,
            stored: vec![],
        })
    }
}

/// Reads the batches of a spill file by index; the file is opened on the first read
/// and stays open until [`SpillReader::close`].
pub struct SpillReader {
    path: PathBuf,
    decoder: FileDecoder,
    compressed: bool,
    entries: Vec<Entry>,
    file: Option<File>,
    /// The stored bytes of the batch being read (reused from batch to batch).
    stored: Vec<u8>,
}

impl SpillReader {
    /// The number of batches.
    pub fn batches(&self) -> usize {
        self.entries.len()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads batch `index`.
    pub fn get(&mut self, index: usize) -> Result<RecordBatch, ArrowError> {
        let entry = *self.entries.get(index).ok_or_else(|| {
            ArrowError::InvalidArgumentError(format!("no batch {index} of {}", self.entries.len()))
        })?;
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(File::open(&self.path)?),
        };
        file.seek(SeekFrom::Start(entry.offset))?;
        // A 64-byte aligned buffer, as Arrow's arrays want theirs.
        let mut message = MutableBuffer::from_len_zeroed(entry.message);
        match self.compressed {
            true => {
                let (header, body) = message.as_slice_mut().split_at_mut(entry.meta);
                file.read_exact(header)?;
                self.stored.resize(entry.stored - entry.meta, 0);
                file.read_exact(&mut self.stored)?;
                let n = lz4_flex::block::decompress_into(&self.stored, body)
                    .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                if n != entry.body {
                    return Err(ArrowError::IpcError(format!(
                        "batch {index}'s body decompressed to {n} bytes, not {}",
                        entry.body
                    )));
                }
            }
            false => file.read_exact(message.as_slice_mut())?,
        }
        let block = Block::new(0, entry.meta as i32, entry.body as i64);
        self.decoder
            .read_record_batch(&block, &Buffer::from(message))?
            .ok_or_else(|| ArrowError::IpcError(format!("batch {index} is not a record batch")))
    }

    /// Closes the file (it reopens on the next read).
    pub fn close(&mut self) {
        self.file = None;
        self.stored = vec![];
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, ListBuilder, StringArray, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(from: i64, rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new(
                "l",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]));
        let n = Int64Array::from_iter((0..rows as i64).map(|i| (i % 7 != 3).then_some(from + i)));
        let s = StringArray::from_iter((0..rows).map(|i| (i % 5 != 0).then(|| format!("é{i}"))));
        let mut l = ListBuilder::new(StringBuilder::new());
        for i in 0..rows {
            for j in 0..i % 3 {
                l.values().append_value(format!("{j}"));
            }
            l.append(i % 4 != 1);
        }
        RecordBatch::try_new(schema, vec![Arc::new(n), Arc::new(s), Arc::new(l.finish())]).unwrap()
    }

    #[test]
    fn batches_read_back_by_index_equal_those_written() {
        for compress in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.spill");
            let batches = [batch(0, 1000), batch(5, 0), batch(7, 3).slice(1, 2)];
            let mut w = SpillWriter::create(&path, batches[0].schema(), compress, 64).unwrap();
            for b in &batches {
                w.write(b).unwrap();
            }
            assert_eq!(w.batches(), 3);
            let mut r = w.finish().unwrap();
            assert_eq!(r.batches(), 3);
            for i in [2, 0, 1, 0] {
                assert_eq!(
                    r.get(i).unwrap(),
                    batches[i],
                    "batch {i}, compress {compress}"
                );
            }
            r.close();
            assert_eq!(r.get(2).unwrap(), batches[2], "reopened");
            assert!(r.get(3).is_err());
        }
    }

    #[test]
    fn compression_makes_repeated_values_small() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StringArray::from_iter_values(["/exports/messages/2026-11-20.csv"; 10_000]);
        let b = RecordBatch::try_from_iter([("path", Arc::new(paths) as _)]).unwrap();
        let size = |compress: bool| {
            let path = dir.path().join(format!("{compress}.spill"));
            let mut w = SpillWriter::create(&path, b.schema(), compress, 64).unwrap();
            w.write(&b).unwrap();
            w.finish().unwrap();
            std::fs::metadata(&path).unwrap().len()
        };
        let (compressed, plain) = (size(true), size(false));
        assert!(compressed * 5 < plain, "{compressed} of {plain} bytes");
    }

    #[test]
    fn a_truncated_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.spill");
        let b = batch(0, 500);
        let mut w = SpillWriter::create(&path, b.schema(), true, 64).unwrap();
        w.write(&b).unwrap();
        let mut r = w.finish().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        assert!(r.get(0).is_err());
    }

    #[test]
    fn a_batch_of_another_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(0, 5);
        let mut w = SpillWriter::create(&dir.path().join("t"), b.schema(), true, 64).unwrap();
        let other = b.project(&[0]).unwrap();
        assert!(w.write(&other).is_err());
    }
}
