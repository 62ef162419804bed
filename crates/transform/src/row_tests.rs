//! Tests of rows one at a time (`not_null`, `accepted_values`, `expression`) decided
//! while a table is written.
//!
//! Each such test fails the rows that meet its condition
//! ([`crate::datatests::DataTest::row_failure`]). [`RowTestCheck`] evaluates every
//! condition on the batches as they stream to the writer, the very rows written, and
//! [`crate::datatests::run_tests`] skips the query of a test no row failed. A test some
//! row failed runs its query as before, which reports the count and the first offending
//! rows; so does a test whose condition cannot be evaluated on a batch (a subquery, an
//! unknown column, an error while evaluating).
//!
//! At 1M customers the queries of `attribution_credits`' `not_null` and `expression`
//! tests read back and decoded 55M rows after the table was written; the conditions cost
//! one vectorised pass over batches already in memory.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use crate::datatests::DataTest;
use crate::vars::VarSet;

/// One row test being decided.
#[derive(Debug)]
struct RowTest {
    /// Its index among the model's tests.
    index: usize,
    failure: Arc<dyn PhysicalExpr>,
    /// A row failed, or the condition could not be evaluated.
    undecided: bool,
}

/// `expr` coerced to `schema` and simplified, as the optimizer leaves a query's
/// expressions: some functions (`coalesce`, `nvl`) exist only to be rewritten there.
fn simplify(ctx: &SessionContext, expr: Expr, schema: &DFSchema) -> Result<Expr> {
    let state = ctx.state();
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .with_config_options(Arc::clone(state.config_options()))
        .with_query_execution_start_time(state.execution_props().query_execution_start_time)
        .build();
    let simplifier = ExprSimplifier::new(context);
    simplifier.simplify(simplifier.coerce(expr, schema)?)
}

/// Evaluates the row tests of a model on every batch written.
#[derive(Debug, Default)]
pub struct RowTestCheck {
    model: String,
    tests: Vec<RowTest>,
}

impl RowTestCheck {
    /// The check of the valid row tests of `tests` (of `model`) whose condition, with the
    /// run's variables filled in, plans against `schema` (the rows written). The others
    /// are left to their queries.
    pub fn new(
        ctx: &SessionContext,
        model: &str,
        tests: &[DataTest],
        vars: &VarSet,
        schema: &DFSchema,
    ) -> Self {
        let origin = std::path::PathBuf::from(format!("{model}.toml"));
        let tests = tests
            .iter()
            .enumerate()
            .filter(|(_, t)| t.compile(model).is_ok())
            .filter_map(|(index, t)| {
                let condition = vars.render(&t.row_failure()?, &origin).ok()?;
                let failure = ctx
                    .parse_sql_expr(&condition, schema)
                    .and_then(|e| simplify(ctx, e, schema))
                    .and_then(|e| ctx.create_physical_expr(e, schema));
                match failure {
                    Ok(failure) => Some(RowTest {
                        index,
                        failure,
                        undecided: false,
                    }),
                    Err(e) => {
                        tracing::debug!(model, index, error = %e, "row test left to its query");
                        None
                    }
                }
            })
            .collect();
        Self {
            model: model.to_string(),
            tests,
        }
    }

    /// Evaluates the conditions still undecided on `batch`.
    pub fn observe(&mut self, batch: &RecordBatch) {
        for test in self.tests.iter_mut().filter(|t| !t.undecided) {
            let failing = test
                .failure
                .evaluate(batch)
                .and_then(|v| v.into_array(batch.num_rows()))
                .map(|a| {
                    a.as_any()
                        .downcast_ref::<BooleanArray>()
                        .map_or(usize::MAX, BooleanArray::true_count)
                });
            test.undecided = !matches!(failing, Ok(0));
            let model = &self.model;
            match failing {
                Ok(0) => {}
                Ok(rows) => tracing::debug!(
                    model,
                    index = test.index,
                    rows,
                    "row test failed; left to its query"
                ),
                Err(e) => {
                    tracing::debug!(model, index = test.index, error = %e, "row test left to its query")
                }
            }
        }
    }

    /// Indices (among the model's tests) of the tests no written row failed.
    pub fn passed_tests(&self) -> Vec<usize> {
        self.tests
            .iter()
            .filter(|t| !t.undecided)
            .map(|t| t.index)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::datatests::AcceptedValues;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("stage", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
        ]))
    }

    fn batch(stages: &[Option<&str>], scores: &[Option<f64>]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(stages.to_vec())),
                Arc::new(Float64Array::from(scores.to_vec())),
            ],
        )
        .unwrap()
    }

    fn tests() -> Vec<DataTest> {
        let test = |f: fn(&mut DataTest)| {
            let mut t = DataTest::default();
            f(&mut t);
            t
        };
        vec![
            test(|t| t.not_null = Some(vec!["stage".into()])),
            test(|t| t.expression = Some("coalesce(score, 0) <= {{ var('max_score') }}".into())),
            test(|t| {
                t.accepted_values = Some(AcceptedValues {
                    column: "stage".into(),
                    values: vec!["new".into(), "active".into()],
                })
            }),
            test(|t| t.unique = Some(vec!["stage".into()])),
            test(|t| t.expression = Some("missing > 0".into())),
            test(|t| t.expression = Some("score IN (SELECT 1)".into())),
            // Two kinds: invalid, left to run_tests to report.
            test(|t| {
                t.not_null = Some(vec!["stage".into()]);
                t.expression = Some("true".into());
            }),
        ]
    }

    fn new_check() -> RowTestCheck {
        let ctx = SessionContext::new();
        let mut vars = VarSet::default();
        vars.set("max_score", "1.0");
        let schema = DFSchema::try_from(schema().as_ref().clone()).unwrap();
        RowTestCheck::new(&ctx, "m", &tests(), &vars, &schema)
    }

    #[test]
    fn only_valid_row_tests_that_plan_against_the_rows_are_decided() {
        // not_null, the expression with its variable and accepted_values; not unique,
        // an unknown column, a subquery or an invalid test.
        assert_eq!(new_check().passed_tests(), [0, 1, 2]);
    }

    #[test]
    fn a_test_no_row_fails_passes_and_one_some_row_fails_is_left_to_its_query() {
        let mut check = new_check();
        check.observe(&batch(&[Some("new"), Some("active")], &[Some(1.0), None]));
        check.observe(&batch(&[], &[]));
        // A NULL score counts as 0: every test holds.
        assert_eq!(check.passed_tests(), [0, 1, 2]);
        check.observe(&batch(&[Some("active")], &[Some(2.0)]));
        assert_eq!(check.passed_tests(), [0, 2]);
        check.observe(&batch(&[None], &[Some(0.0)]));
        // A NULL stage fails not_null, and is no unaccepted value.
        assert_eq!(check.passed_tests(), [2]);
        check.observe(&batch(&[Some("gone")], &[Some(0.5)]));
        assert!(check.passed_tests().is_empty());
    }
}
