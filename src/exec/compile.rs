//! From a checked merge to a compiled plan for one tensor: lower, run the passes,
//! compile the kernels. Plans are cached by everything they depend on.

use super::run::Compiled;
use crate::codegen::Engine;
use crate::interp::{TensorFacts, Value};
use crate::ir::graph::Graph;
use crate::ir::kernel::BufDtype;
use crate::ir::lower::{LowerError, LowerInput, lower};
use crate::types::CheckedMerge;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Everything a plan depends on besides the program.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PlanKey {
    pub params: String,
    pub facts: (String, String, i64, i64),
    pub shapes: Vec<Vec<usize>>,
    pub in_dtypes: Vec<BufDtype>,
    pub out_dtype: BufDtype,
}

/// Lowers and runs the graph passes.
pub fn lower_merge(
    m: &CheckedMerge,
    params: Vec<Value>,
    facts: &TensorFacts,
    shapes: Vec<Vec<usize>>,
) -> Result<Graph, LowerError> {
    lower(&LowerInput {
        merge: m,
        params,
        facts,
        shapes,
    })
}

/// Compiles one merge for one tensor's shapes, facts and parameters.
pub fn compile_merge(
    m: &CheckedMerge,
    params: Vec<Value>,
    facts: &TensorFacts,
    shapes: Vec<Vec<usize>>,
    in_dtypes: &[BufDtype],
    out_dtype: BufDtype,
    engine: &dyn Engine,
) -> Result<Compiled, LowerError> {
    let g = lower_merge(m, params, facts, shapes)?;
    let plan = crate::passes::compile_graph(g, out_dtype, in_dtypes);
    Compiled::new(plan, engine).map_err(LowerError::Unsupported)
}

/// A cache of compiled plans for one merge program and engine.
pub struct PlanCache {
    plans: Mutex<HashMap<PlanKey, Arc<Result<Compiled, LowerError>>>>,
    /// Whether the program reads the tensor's name (else the name is left out of keys).
    pub uses_facts: bool,
}

impl PlanCache {
    pub fn new(uses_facts: bool) -> PlanCache {
        PlanCache {
            plans: Mutex::new(HashMap::new()),
            uses_facts,
        }
    }

    pub fn get_or_compile(
        &self,
        key: PlanKey,
        compile: impl FnOnce() -> Result<Compiled, LowerError>,
    ) -> Arc<Result<Compiled, LowerError>> {
        if let Some(p) = self.plans.lock().expect("plan cache").get(&key) {
            return p.clone();
        }
        let p = Arc::new(compile());
        self.plans
            .lock()
            .expect("plan cache")
            .insert(key, p.clone());
        p
    }

    pub fn len(&self) -> usize {
        self.plans.lock().expect("plan cache").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
