//! Native SQL functions that crmflow registers in every session (see the README's
//! "SQL functions" table); each is covered by `tests/slt/functions_*.slt`.

pub mod business_time;
pub mod exact_sum;
pub mod hash;
pub mod identity;
pub mod markov;
pub mod path;

use chrono_tz::Tz;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

use crate::error::Result;

/// Registers every crmflow function.
pub fn register_all(registry: &mut dyn FunctionRegistry, tz: Tz) -> Result<()> {
    registry.register_udf(std::sync::Arc::new(ScalarUDF::from(
        business_time::BusinessDate::new(tz),
    )))?;
    registry.register_udf(std::sync::Arc::new(ScalarUDF::from(
        business_time::BusinessMonth::new(tz),
    )))?;
    registry.register_udf(std::sync::Arc::new(ScalarUDF::from(hash::Sha256Hex::new())))?;
    registry.register_udf(std::sync::Arc::new(ScalarUDF::from(hash::Md5Hex::new())))?;
    registry.register_udaf(std::sync::Arc::new(AggregateUDF::from(
        identity::ConnectedComponents::new(),
    )))?;
    registry.register_udaf(std::sync::Arc::new(AggregateUDF::from(
        markov::MarkovRemovalEffects::new(),
    )))?;
    registry.register_udaf(std::sync::Arc::new(AggregateUDF::from(
        path::ChannelPath::new(),
    )))?;
    // In place of the built-in `sum` (same name): order-independent over DOUBLE.
    registry.register_udaf(std::sync::Arc::new(AggregateUDF::from(
        exact_sum::ExactSum::new(),
    )))?;
    Ok(())
}
