//! Comparing a feed with its previous publication by key: rows `added` (new keys),
//! `removed` (keys gone; the previous rows) and `changed` (same key, other values).

use std::collections::HashMap;

use arrow::array::{AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::row::{RowConverter, SortField};

use crate::error::Result;

/// The changes between two publications of a feed.
#[derive(Debug, Clone)]
pub struct Diff {
    pub added: RecordBatch,
    pub removed: RecordBatch,
    pub changed: RecordBatch,
}

fn row_bytes(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let fields: Vec<SortField> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    let rows = converter.convert_columns(batch.columns())?;
    Ok(rows.iter().map(|r| r.as_ref().to_vec()).collect())
}

fn pick(batch: &RecordBatch, indices: Vec<u32>) -> Result<RecordBatch> {
    Ok(take_record_batch(batch, &UInt32Array::from(indices))?)
}

/// Diffs `current` against `previous`; both have the key as a string first column.
/// When the columns differ (the segment changed shape), every kept key counts as changed.
pub fn diff(previous: Option<&RecordBatch>, current: &RecordBatch) -> Result<Diff> {
    let empty = current.slice(0, 0);
    let Some(previous) = previous else {
        return Ok(Diff {
            added: current.clone(),
            removed: empty.clone(),
            changed: empty,
        });
    };
    let same_shape = previous.schema().fields() == current.schema().fields();
    let prev_keys = previous.column(0).as_string::<i32>();
    let cur_keys = current.column(0).as_string::<i32>();
    let index: HashMap<&str, usize> = (0..previous.num_rows())
        .map(|i| (prev_keys.value(i), i))
        .collect();
    let (prev_rows, cur_rows) = if same_shape {
        (row_bytes(previous)?, row_bytes(current)?)
    } else {
        (vec![], vec![])
    };
    let mut added = vec![];
    let mut changed = vec![];
    let mut seen = vec![false; previous.num_rows()];
    for (i, key) in cur_keys.iter().enumerate() {
        match index.get(key.unwrap_or_default()) {
            None => added.push(i as u32),
            Some(&j) => {
                seen[j] = true;
                if !same_shape || prev_rows[j] != cur_rows[i] {
                    changed.push(i as u32);
                }
            }
        }
    }
    let removed: Vec<u32> = (0..previous.num_rows())
        .filter(|j| !seen[*j])
        .map(|j| j as u32)
        .collect();
    Ok(Diff {
        added: pick(current, added)?,
        removed: pick(previous, removed)?,
        changed: pick(current, changed)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(rows: &[(&str, &str)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, false),
            Field::new("sku", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn added_removed_changed() {
        let prev = batch(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let cur = batch(&[("b", "1"), ("c", "2"), ("d", "1")]);
        let d = diff(Some(&prev), &cur).unwrap();
        assert_eq!(d.added, batch(&[("d", "1")]));
        assert_eq!(d.removed, batch(&[("a", "1")]));
        assert_eq!(d.changed, batch(&[("c", "2")]));
        let first = diff(None, &cur).unwrap();
        assert_eq!(first.added.num_rows(), 3);
        assert_eq!(first.removed.num_rows() + first.changed.num_rows(), 0);
    }
}
