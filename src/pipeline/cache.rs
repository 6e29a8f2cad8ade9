//! Compiled plans cached by everything they depend on besides the program, so a
//! checkpoint's many tensors of one shape compile once.

use crate::exec::run::Compiled;
use crate::ir::kernel::Dtype;
use crate::ir::lower::LowerError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Everything a plan depends on besides the program.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PlanKey {
    pub params: String,
    pub facts: (String, String, i64, i64),
    pub shapes: Vec<Vec<usize>>,
    pub in_dtypes: Vec<Dtype>,
    pub out_dtype: Dtype,
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
