//! Compaction of sliced batches before the operators that account for the batches they
//! hold: sorts and the build side of hash joins.
//!
//! DataFusion 55 charges a batch to the memory pool by the size of the buffers it points
//! into, not by the rows it holds. Window operators and grouped aggregates emit their
//! output as slices of one large buffer, so every 8192-row slice was charged the whole
//! buffer: at 100k customers `int_attribution_paths` asked the pool for 6.3 GB to sort a
//! batch of a few MB, and the run failed under a 4 GB pool while the process used 1 GB.
//! [`CompactSlicedInputs`] puts a [`CompactExec`] under every such operator; it copies a
//! batch into fresh buffers only when its buffers are more than twice its rows' size
//! (plus a small slack), and passes every other batch through untouched.
//!
//! It also cuts batches of more than twice the session's batch size into batch-size
//! pieces: a left join emits all its unmatched build rows as one batch, and at 1M
//! customers `conversions` handed its sort one such batch, which the sort could only
//! reserve whole (2 GB) and failed.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, MutableArrayData, make_array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::StreamExt;

/// Bytes a batch may hold beyond twice its rows' size before it is copied.
const SLACK_BYTES: usize = 1 << 20;

/// Passes batches through, copying the ones that are small slices of large buffers.
#[derive(Debug)]
pub struct CompactExec {
    input: Arc<dyn ExecutionPlan>,
}

impl CompactExec {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self { input }
    }
}

impl DisplayAs for CompactExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CompactExec")
    }
}

#[allow(deprecated)] // `with_new_children` is still a required method in DataFusion 55
impl ExecutionPlan for CompactExec {
    fn name(&self) -> &'static str {
        "CompactExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(CompactExec::new(input))),
            _ => Err(datafusion::error::DataFusionError::Internal(
                "CompactExec has exactly one child".into(),
            )),
        }
    }

    crate::stand_in::new_children_by_replace!();

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema: SchemaRef = self.input.schema();
        let batch_size = context.session_config().batch_size();
        let input = self.input.execute(partition, context)?;
        let compacted = input.flat_map(move |batch| {
            let pieces: Box<dyn Iterator<Item = Result<RecordBatch>> + Send> = match batch {
                Ok(batch) => Box::new(pieces(batch, batch_size)),
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
            futures::stream::iter(pieces)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, compacted)))
    }
}

/// A batch as compacted pieces of at most `batch_size` rows when it holds more than
/// twice that, else the batch compacted; pieces are cut as they are consumed.
pub fn pieces(batch: RecordBatch, batch_size: usize) -> impl Iterator<Item = Result<RecordBatch>> {
    let rows = batch.num_rows();
    let step = if rows > batch_size.saturating_mul(2) && batch_size > 0 {
        batch_size
    } else {
        rows.max(1)
    };
    (0..rows.max(1)).step_by(step).map(move |offset| {
        compact(batch.slice(offset.min(rows), step.min(rows - offset.min(rows))))
    })
}

/// The batch itself, or a copy in fresh buffers when it is a small slice of large ones.
pub fn compact(batch: RecordBatch) -> Result<RecordBatch> {
    let held: usize = batch
        .columns()
        .iter()
        .map(|c| c.get_array_memory_size())
        .sum();
    let mut used = 0;
    for column in batch.columns() {
        used += column.to_data().get_slice_memory_size()?;
    }
    if held <= used.saturating_mul(2).saturating_add(SLACK_BYTES) {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .map(copy_array)
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// A copy of an array's rows in new buffers. View arrays (`Utf8View`, `BinaryView`)
/// are garbage-collected: a plain copy of their views would still point into (and be
/// charged for) the whole data buffers of the original.
fn copy_array(array: &ArrayRef) -> Result<ArrayRef> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::DataType;
    match array.data_type() {
        DataType::Utf8View => return Ok(Arc::new(array.as_string_view().gc())),
        DataType::BinaryView => return Ok(Arc::new(array.as_binary_view().gc())),
        _ => {}
    }
    let data = array.to_data();
    let mut copy = MutableArrayData::new(vec![&data], false, data.len());
    copy.try_extend(0, 0, data.len())?;
    Ok(make_array(copy.freeze()))
}

/// Puts a [`CompactExec`] under every sort and under the build side of every hash join.
#[derive(Debug, Default)]
pub struct CompactSlicedInputs;

impl PhysicalOptimizerRule for CompactSlicedInputs {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            // A sort's only input; a hash join's build (left) side, collected and accounted.
            let child_to_wrap = (node.downcast_ref::<SortExec>().is_some()
                || node.downcast_ref::<HashJoinExec>().is_some())
            .then_some(0);
            let Some(index) = child_to_wrap else {
                return Ok(Transformed::no(node));
            };
            let mut children: Vec<Arc<dyn ExecutionPlan>> =
                node.children().into_iter().cloned().collect();
            let Some(child) = children.get(index) else {
                return Ok(Transformed::no(node));
            };
            if child.downcast_ref::<CompactExec>().is_some() {
                return Ok(Transformed::no(node));
            }
            children[index] = Arc::new(CompactExec::new(Arc::clone(child)));
            let node = node.replace_children(
                children,
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
            )?;
            Ok(Transformed::yes(node))
        })
        .data()
    }

    fn name(&self) -> &str {
        "compact_sliced_inputs"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("customer-{i:08}")),
                )),
            ],
        )
        .expect("batch")
    }

    fn held(b: &RecordBatch) -> usize {
        b.columns().iter().map(|c| c.get_array_memory_size()).sum()
    }

    #[test]
    fn a_small_slice_of_a_large_batch_is_copied() {
        let big = batch(500_000);
        let slice = big.slice(1000, 8192);
        assert!(
            held(&slice) > 10 * (1 << 20),
            "the slice holds the whole buffers"
        );
        let compacted = compact(slice.clone()).expect("compact");
        assert_eq!(compacted, slice, "same rows");
        assert!(held(&compacted) < 1 << 20, "held {}", held(&compacted));
    }

    #[test]
    fn a_batch_over_twice_the_batch_size_is_cut_into_compact_pieces() {
        let big = batch(50_000);
        let parts: Vec<RecordBatch> = pieces(big.clone(), 8192).map(|p| p.unwrap()).collect();
        let rows: Vec<usize> = parts.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(rows, [8192, 8192, 8192, 8192, 8192, 8192, 848]);
        assert!(parts.iter().all(|p| held(p) < held(&big) / 4));
        let whole = datafusion::arrow::compute::concat_batches(&big.schema(), &parts).unwrap();
        assert_eq!(whole, big);
        // Up to twice the batch size, and empty batches, stay one batch.
        assert_eq!(pieces(batch(16_384), 8192).count(), 1);
        assert_eq!(
            pieces(batch(0), 8192)
                .map(|p| p.unwrap().num_rows())
                .sum::<usize>(),
            0
        );
    }

    #[test]
    fn a_slice_of_a_string_view_array_stops_holding_its_buffers() {
        use datafusion::arrow::array::StringViewArray;
        let schema = Arc::new(Schema::new(vec![Field::new(
            "id",
            DataType::Utf8View,
            false,
        )]));
        let values = StringViewArray::from_iter_values(
            (0..100_000).map(|i| format!("customer-identifier-{i:012}")),
        );
        let big = RecordBatch::try_new(schema, vec![Arc::new(values)]).expect("batch");
        let parts: Vec<RecordBatch> = pieces(big.clone(), 8192).map(|p| p.unwrap()).collect();
        assert!(
            parts.iter().all(|p| held(p) < held(&big) / 4),
            "{}",
            held(&parts[0])
        );
        let whole = datafusion::arrow::compute::concat_batches(&big.schema(), &parts).unwrap();
        assert_eq!(whole, big);
    }

    #[test]
    fn a_whole_batch_passes_through_untouched() {
        let whole = batch(8192);
        let column = Arc::clone(whole.column(1));
        let out = compact(whole).expect("compact");
        assert!(Arc::ptr_eq(out.column(1), &column));
    }
}
