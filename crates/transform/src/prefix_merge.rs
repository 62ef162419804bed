//! Merging sorted partitions by the leading sort keys they are hash-partitioned on.
//!
//! A query's sorted partitions are merged into one stream by `SortPreservingMergeExec`,
//! which compares rows by the whole sort key. DataFusion 55 merges a key of one column
//! by its values directly, but encodes a key of several columns into rows first, for
//! every batch of every partition: at 1M customers `int_purchases`, sorted by
//! `customer_id, purchase_number` (and, from its window, `converted_at, conversion_id`),
//! spent 14% of its CPU encoding rows for its final merge.
//!
//! When the partitions are hash partitions of the leading part of the sort key (as they
//! are after a window, a grouped aggregate or a join partitioned by that part), all
//! the rows that tie on that part are in one partition, already in order. Merging by
//! that part alone then gives the same rows in the same order: a merge takes each
//! partition's rows in turn, and ties between partitions cannot happen.
//! [`MergeByPartitionKeys`] puts a [`PrefixMergeExec`], which merges by that part, in
//! place of such a merge. It keeps the merge's properties (the whole sort order
//! included, which its output still has), so the plan around it is unchanged.
//!
//! At 1M customers `int_purchases` took 0.99-1.03 s against 1.06-1.11 s (four of five
//! interleaved pairs; the fifth 1.20 against 1.08), user CPU 1.19-1.30 s against
//! 1.31-1.38 s. `int_conversion_touches` (9.2M rows, merged by `conversion_id` instead
//! of four columns) was within the noise: 9.9-10.2 s both ways.

use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    ReplaceChildrenOptions, SendableRecordBatchStream,
};

/// Merges hash-partitioned sorted partitions by the part of the sort key they are
/// partitioned on; stands in for a `SortPreservingMergeExec` by the whole key.
#[derive(Debug)]
pub struct PrefixMergeExec {
    /// The merge replaced: its properties, input requirements and whole sort key.
    merge: Arc<dyn ExecutionPlan>,
    /// The merge by the leading keys, which does the work.
    prefix_merge: Arc<SortPreservingMergeExec>,
}

impl PrefixMergeExec {
    /// The replacement for `merge`, or `None` when it is not a merge of hash partitions
    /// whose keys are all within a shorter leading part of its sort key.
    pub fn replacing(merge: &Arc<dyn ExecutionPlan>) -> Option<Self> {
        let spm = merge.downcast_ref::<SortPreservingMergeExec>()?;
        let input = spm.input();
        let Partitioning::Hash(keys, partitions) = input.output_partitioning() else {
            return None;
        };
        if partitions < &2 || keys.is_empty() {
            return None;
        }
        let sort = spm.expr();
        let leading = (1..sort.len()).find(|&n| {
            keys.iter()
                .all(|key| sort.iter().take(n).any(|s| s.expr.eq(key)))
        })?;
        let ordering = LexOrdering::new(sort.iter().take(leading).cloned())?;
        let prefix_merge =
            SortPreservingMergeExec::new(ordering, Arc::clone(input)).with_fetch(spm.fetch());
        Some(Self {
            merge: Arc::clone(merge),
            prefix_merge: Arc::new(prefix_merge),
        })
    }
}

impl DisplayAs for PrefixMergeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let whole = self
            .merge
            .output_ordering()
            .map_or_else(String::new, |o| o.to_string());
        write!(
            f,
            "PrefixMergeExec: [{}] (hash partitions, sorted by [{whole}])",
            self.prefix_merge.expr()
        )?;
        if let Some(fetch) = self.prefix_merge.fetch() {
            write!(f, ", fetch={fetch}")?;
        }
        Ok(())
    }
}

#[allow(deprecated)] // `with_new_children` is still a required method in DataFusion 55
impl ExecutionPlan for PrefixMergeExec {
    fn name(&self) -> &'static str {
        "PrefixMergeExec"
    }

    crate::stand_in::replaced_operator_properties!(merge);

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.prefix_merge.input()]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn fetch(&self) -> Option<usize> {
        self.prefix_merge.fetch()
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Where the new input is not hash-partitioned so, the merge by the whole key.
        crate::stand_in::rebuilt(&self.merge, children, options, PrefixMergeExec::replacing)
    }

    crate::stand_in::new_children_by_replace!();

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.prefix_merge.execute(partition, context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.prefix_merge.metrics()
    }
}

/// Replaces every merge of hash partitions by the whole sort key with a
/// [`PrefixMergeExec`] by the leading keys they are partitioned on.
#[derive(Debug, Default)]
pub struct MergeByPartitionKeys;

impl PhysicalOptimizerRule for MergeByPartitionKeys {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::stand_in::stand_in_everywhere(plan, PrefixMergeExec::replacing)
    }

    fn name(&self) -> &str {
        "merge_by_partition_keys"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// 3,000 rows of 13 customers (and NULL), in small batches, on three partitions.
    const ROWS: &str = "(select case when v % 17 = 0 then null else 'customer-' || (v % 13) end \
                        as customer, (v * 7919) % 101 as at, v as id \
                        from generate_series(1, 3000) as g(v))";

    fn context(rule: bool) -> SessionContext {
        let config = SessionConfig::new()
            .with_target_partitions(3)
            .with_batch_size(5);
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if rule {
            builder = builder.with_physical_optimizer_rule(Arc::new(MergeByPartitionKeys));
        }
        SessionContext::new_with_state(builder.build())
    }

    /// The rows in order and the plan's text.
    async fn run(ctx: &SessionContext, sql: &str) -> (String, String) {
        let df = ctx.sql(sql).await.expect("sql");
        let plan = df.clone().create_physical_plan().await.expect("plan");
        let plan = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(false)
            .to_string();
        let batches = df.collect().await.expect("collect");
        let rows = pretty_format_batches(&batches).expect("format").to_string();
        (rows, plan)
    }

    /// The query gives the same rows in the same order with the rule as without, and
    /// its final merge is replaced or not as `replaced` says.
    async fn same_rows(sql: &str, replaced: bool) {
        let (expected, plan) = run(&context(false), sql).await;
        assert!(plan.contains("SortPreservingMergeExec"), "{plan}");
        let (rows, plan) = run(&context(true), sql).await;
        assert_eq!(plan.contains("PrefixMergeExec"), replaced, "{plan}");
        assert_eq!(rows, expected, "{sql}\n{plan}");
    }

    #[tokio::test]
    async fn hash_partitions_are_merged_by_their_keys_in_the_same_order() {
        // A window partitioned by customer: merged by customer alone, not by
        // (customer, n, at, id).
        same_rows(
            &format!(
                "select customer, at, id, row_number() over (partition by customer order by at, id) as n \
                 from {ROWS} order by customer, n"
            ),
            true,
        )
        .await;
        // A window of two partition keys, sorted by both (one descending) and the row
        // number: merged by the two.
        same_rows(
            &format!(
                "select customer, at % 4 as k, id, row_number() over (partition by customer, at % 4 order by id) as n \
                 from {ROWS} order by customer, k desc, n"
            ),
            true,
        )
        .await;
        // With a limit: the merge keeps it.
        let sql = format!(
            "select customer, at, id, row_number() over (partition by customer order by at, id) as n \
             from {ROWS} order by customer, n limit 40"
        );
        same_rows(&sql, true).await;
        let (_, plan) = run(&context(true), &sql).await;
        assert!(plan.contains("fetch=40"), "{plan}");
    }

    #[tokio::test]
    async fn merges_whose_leading_keys_do_not_hold_the_partition_keys_stay() {
        // Partitioned by (customer, at), sorted by at first: ties on `at` span partitions.
        same_rows(
            &format!(
                "select customer, at, count(*) as c from {ROWS} group by customer, at \
                 order by at, c, customer"
            ),
            false,
        )
        .await;
        // Sorted by exactly the partition keys: nothing shorter to merge by.
        same_rows(
            &format!(
                "select customer, at, count(*) as c from {ROWS} group by customer, at \
                 order by customer, at"
            ),
            false,
        )
        .await;
    }
}
