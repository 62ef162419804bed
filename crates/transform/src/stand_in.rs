//! What the engine's own operators that stand in for a DataFusion operator share
//! ([`crate::row_number::RowNumberExec`], [`crate::prefix_merge::PrefixMergeExec`]): each
//! keeps the operator it replaced (its schema, properties and input requirements), is
//! rebuilt from it whenever the plan around it gets new children, and is put in place
//! by a physical optimizer rule wherever its `replacing` accepts a node.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::physical_plan::{ExecutionPlan, ReplaceChildrenOptions};

/// A function that gives the stand-in for a node, or `None` where it does not apply.
pub type Replacing<T> = fn(&Arc<dyn ExecutionPlan>) -> Option<T>;

/// The replaced operator with new children, stood in for again where that still applies
/// (else the operator itself, which does the work).
pub fn rebuilt<T: ExecutionPlan + 'static>(
    replaced: &Arc<dyn ExecutionPlan>,
    children: Vec<Arc<dyn ExecutionPlan>>,
    options: ReplaceChildrenOptions,
    replacing: Replacing<T>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let node = Arc::clone(replaced).replace_children(children, options)?;
    Ok(match replacing(&node) {
        Some(stand_in) => Arc::new(stand_in),
        None => node,
    })
}

/// `plan` with every node that `replacing` accepts replaced by its stand-in.
pub fn stand_in_everywhere<T: ExecutionPlan + 'static>(
    plan: Arc<dyn ExecutionPlan>,
    replacing: Replacing<T>,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        Ok(match replacing(&node) {
            Some(stand_in) => Transformed::yes(Arc::new(stand_in) as Arc<dyn ExecutionPlan>),
            None => Transformed::no(node),
        })
    })
    .data()
}

/// The two ways DataFusion 55 asks an operator for itself with new children, both
/// answered by the operator's `replace_children` (its properties recomputed). Expands
/// inside an `impl ExecutionPlan` marked `#[allow(deprecated)]`.
macro_rules! new_children_by_replace {
    () => {
        fn with_new_children(
            self: Arc<Self>,
            children: Vec<Arc<dyn ExecutionPlan>>,
        ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
            self.replace_children(
                children,
                datafusion::physical_plan::ReplaceChildrenOptions::new(
                    datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
                ),
            )
        }

        fn with_new_children_and_same_properties(
            self: Arc<Self>,
            children: Vec<Arc<dyn ExecutionPlan>>,
        ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
            self.with_new_children(children)
        }
    };
}
pub(crate) use new_children_by_replace;

/// What a stand-in takes from the operator it replaced, in the field `$replaced`: its
/// properties (schema, partitioning, ordering), input requirements and expressions.
/// Expands inside its `impl ExecutionPlan`.
macro_rules! replaced_operator_properties {
    ($replaced:ident) => {
        fn properties(&self) -> &Arc<datafusion::physical_plan::PlanProperties> {
            self.$replaced.properties()
        }

        fn input_distribution_requirements(
            &self,
        ) -> datafusion::physical_plan::InputDistributionRequirements {
            self.$replaced.input_distribution_requirements()
        }

        fn required_input_ordering(
            &self,
        ) -> Vec<Option<datafusion::physical_expr::OrderingRequirements>> {
            self.$replaced.required_input_ordering()
        }

        fn apply_expressions(
            &self,
            f: &mut dyn FnMut(
                &Arc<dyn datafusion::physical_plan::PhysicalExpr>,
            ) -> datafusion::error::Result<
                datafusion::common::tree_node::TreeNodeRecursion,
            >,
        ) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion> {
            self.$replaced.apply_expressions(f)
        }
    };
}
pub(crate) use replaced_operator_properties;
