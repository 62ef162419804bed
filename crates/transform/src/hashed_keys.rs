//! Unique keys proven while a table is written in any order, by the hashes of the keys.
//!
//! [`crate::sorted_keys`] decides a `unique` test whose key is a prefix of the table's
//! sort order. For any other key, [`HashedKeyCheck`] keeps a 64-bit hash of every row's
//! key as the rows stream to the writer (DataFusion's `create_hashes`: equal keys hash
//! alike, NULLs included, as `GROUP BY` groups them). After the write it sorts the
//! hashes: when no two are equal, no two rows share a key, and
//! [`crate::datatests::run_tests`] skips the test's `GROUP BY ... HAVING count(*) > 1`
//! query. Two equal hashes prove nothing (a repeated key, or two keys with one hash):
//! the query runs as before and reports the count and the first offending rows.
//!
//! Memory: 8 bytes per row, at most [`MAX_HASHED_ROWS`] rows a key (a longer table leaves
//! the key to its query). The query it replaces holds every distinct key in a hash
//! table: at 1M customers, `touchpoints`' `unique(touch_id)` over 15.6M text ids was the
//! models stage's peak, 3637-3771 MiB (three runs); with the key hashed the stage
//! peaked at 2263 and 2527 MiB, and the 5 s the query took after the write are gone.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{RandomState, create_hashes};

use crate::datatests::DataTest;

/// Rows a key's hashes may cover (512 MiB of hashes); beyond, the key is left to its query.
pub const MAX_HASHED_ROWS: usize = 64 << 20;

/// A key (the columns of a `unique` test) and the hashes of the rows seen so far.
#[derive(Debug)]
struct Key {
    /// The index of its test in the model's tests.
    test: usize,
    /// Positions of its columns in the batches.
    positions: Vec<usize>,
    hashes: Vec<u64>,
    /// Left to its query: too many rows, or a column that could not be hashed.
    abandoned: bool,
}

impl Key {
    fn abandon(&mut self) {
        self.abandoned = true;
        self.hashes = Vec::new();
    }
}

/// Hashes the `unique` keys of a table as its rows stream by, then tells which keys no
/// two rows shared.
#[derive(Debug)]
pub struct HashedKeyCheck {
    keys: Vec<Key>,
    max_rows: usize,
}

impl HashedKeyCheck {
    /// The check for the `unique` tests of `tests` that are not in `decided_elsewhere` (the
    /// tests [`crate::sorted_keys::SortedKeyCheck`] decides), in a table of `schema`.
    /// Keys with a float or nested column are left to their queries: their hashes and
    /// `GROUP BY`'s equality may differ (`-0.0`, NaN).
    pub fn new(tests: &[DataTest], decided_elsewhere: &[usize], schema: &Schema) -> Self {
        Self::with_max_rows(tests, decided_elsewhere, schema, MAX_HASHED_ROWS)
    }

    fn with_max_rows(
        tests: &[DataTest],
        decided_elsewhere: &[usize],
        schema: &Schema,
        max_rows: usize,
    ) -> Self {
        let unique = tests.iter().enumerate();
        let keys = unique
            .filter_map(|(i, t)| Some((i, t.unique.as_ref()?)))
            .filter(|(i, columns)| !decided_elsewhere.contains(i) && !columns.is_empty())
            .filter_map(|(test, columns)| {
                let positions = columns
                    .iter()
                    .map(|c| {
                        let i = schema.index_of(c).ok()?;
                        hashes_as_grouped(schema.field(i).data_type()).then_some(i)
                    })
                    .collect::<Option<Vec<usize>>>()?;
                Some(Key {
                    test,
                    positions,
                    hashes: vec![],
                    abandoned: false,
                })
            })
            .collect();
        Self { keys, max_rows }
    }

    /// Adds the hashes of the keys of `batch`'s rows.
    pub fn observe(&mut self, batch: &RecordBatch) {
        let rows = batch.num_rows();
        for key in self.keys.iter_mut().filter(|k| !k.abandoned) {
            let start = key.hashes.len();
            if start + rows > self.max_rows {
                key.abandon();
                continue;
            }
            let columns: Vec<&ArrayRef> = key.positions.iter().map(|&i| batch.column(i)).collect();
            // Zeros first: `create_hashes` leaves a NULL's hash as it finds it.
            key.hashes.resize(start + rows, 0);
            let hashed = create_hashes(
                columns,
                &RandomState::with_seed(0),
                &mut key.hashes[start..],
            );
            if hashed.is_err() {
                key.abandon();
            }
        }
    }

    /// Whether it holds any key to decide.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The indices (in the model's tests) of the `unique` tests whose key no two rows
    /// shared. Sorts each key's hashes (about 0.3 s for 15.6M rows), so call it off the
    /// async runtime's threads.
    pub fn passed_tests(self) -> Vec<usize> {
        self.keys
            .into_iter()
            .filter(|k| !k.abandoned)
            .filter_map(|mut k| {
                k.hashes.sort_unstable();
                k.hashes
                    .windows(2)
                    .all(|pair| pair[0] != pair[1])
                    .then_some(k.test)
            })
            .collect()
    }
}

/// Whether equal values of this type always hash alike, as `GROUP BY` compares them.
fn hashes_as_grouped(data_type: &DataType) -> bool {
    match data_type {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => false,
        DataType::Dictionary(_, values) => hashes_as_grouped(values),
        other => !other.is_nested(),
    }
}

#[cfg(test)]
mod tests {
    use crate::sorted_keys::tests::{batch, schema, unique};

    use super::*;

    /// The tests passed after `batches`, for `tests` none of which is decided elsewhere.
    fn passed(tests: &[DataTest], batches: &[RecordBatch]) -> Vec<usize> {
        let mut check = HashedKeyCheck::new(tests, &[], &schema());
        for b in batches {
            check.observe(b);
        }
        check.passed_tests()
    }

    #[test]
    fn keys_no_two_rows_share_pass_within_and_across_batches() {
        let tests = [unique(&["customer"]), unique(&["n", "customer"])];
        let batches = [
            batch(&[Some("c"), Some("a")], &[Some(1), Some(1)]),
            batch(&[Some("b"), None], &[Some(1), Some(2)]),
        ];
        assert_eq!(passed(&tests, &batches), [0, 1]);
    }

    #[test]
    fn a_key_repeated_within_or_across_batches_fails() {
        let tests = [
            unique(&["customer"]),
            unique(&["n"]),
            unique(&["customer", "n"]),
        ];
        let within = [batch(
            &[Some("a"), Some("b"), Some("a")],
            &[Some(1), Some(2), Some(3)],
        )];
        assert_eq!(passed(&tests, &within), [1, 2]);
        let across = [
            batch(&[Some("a"), Some("b")], &[Some(1), Some(2)]),
            batch(&[Some("c"), Some("b")], &[Some(3), Some(2)]),
        ];
        assert_eq!(passed(&tests, &across), Vec::<usize>::new());
    }

    #[test]
    fn nulls_are_equal_as_in_group_by() {
        let tests = [unique(&["customer"]), unique(&["n", "customer"])];
        // Two NULL customers repeat `customer`; with distinct `n` the pair does not repeat.
        let batches = [
            batch(&[None, Some("a")], &[Some(1), None]),
            batch(&[None], &[Some(2)]),
        ];
        assert_eq!(passed(&tests, &batches), [1]);
        // (NULL, "a") twice repeats the pair.
        let batches = [batch(&[Some("a")], &[None]), batch(&[Some("a")], &[None])];
        assert_eq!(passed(&tests[1..], &batches), Vec::<usize>::new());
    }

    #[test]
    fn float_keys_unknown_columns_and_keys_decided_elsewhere_are_left_to_their_queries() {
        let tests = [
            unique(&["score"]),
            unique(&["missing"]),
            unique(&["customer"]),
            unique(&["n"]),
        ];
        let mut check = HashedKeyCheck::new(&tests, &[2], &schema());
        check.observe(&batch(&[Some("a"), Some("b")], &[Some(1), Some(2)]));
        assert_eq!(check.passed_tests(), [3]);
        assert!(HashedKeyCheck::new(&tests[..1], &[], &schema()).is_empty());
    }

    #[test]
    fn a_table_longer_than_the_limit_leaves_the_key_to_its_query() {
        let tests = [unique(&["n"])];
        let rows = batch(
            &[Some("a"), Some("b"), Some("c")],
            &[Some(1), Some(2), Some(3)],
        );
        let mut check = HashedKeyCheck::with_max_rows(&tests, &[], &schema(), 5);
        check.observe(&rows);
        assert_eq!(check.keys[0].hashes.len(), 3);
        check.observe(&rows);
        assert!(check.keys[0].abandoned && check.keys[0].hashes.capacity() == 0);
        assert!(check.passed_tests().is_empty());
        let mut check = HashedKeyCheck::with_max_rows(&tests, &[], &schema(), 6);
        check.observe(&rows.slice(0, 2));
        check.observe(&rows.slice(2, 1));
        assert_eq!(check.passed_tests(), [0]);
    }
}
