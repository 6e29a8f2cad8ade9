//! Checkpoints opened by `load(path, tensor)`, kept open across lines and
//! reopened when a file changes on disk.

use crate::interp::Tensor;
use crate::runtime::safetensors::{Checkpoint, TensorInfo};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

/// Size and modification time of each file of a checkpoint.
type Stamp = Vec<(u64, Option<SystemTime>)>;

fn stamp(files: &[&Path]) -> Stamp {
    files
        .iter()
        .map(|f| match std::fs::metadata(f) {
            Ok(m) => (m.len(), m.modified().ok()),
            Err(_) => (u64::MAX, None),
        })
        .collect()
}

#[derive(Default)]
pub struct Checkpoints {
    open: RefCell<HashMap<PathBuf, (Stamp, Rc<Checkpoint>)>>,
}

impl Checkpoints {
    /// The checkpoint at `path`, opened once and reused while its files are unchanged.
    pub fn get(&self, path: &str) -> Result<Rc<Checkpoint>, String> {
        let key = PathBuf::from(path);
        if let Some((st, ck)) = self.open.borrow().get(&key)
            && *st == stamp(&ck.files())
        {
            return Ok(ck.clone());
        }
        let ck = Rc::new(Checkpoint::open(&key).map_err(|e| e.message)?);
        let st = stamp(&ck.files());
        self.open.borrow_mut().insert(key, (st, ck.clone()));
        Ok(ck)
    }

    /// A tensor's description, refusing dtypes `load` cannot convert.
    pub fn info(&self, path: &str, name: &str) -> Result<TensorInfo, String> {
        let ck = self.get(path)?;
        let info = ck.info(name).map_err(|e| e.message)?.clone();
        if crate::semantics::dtype::Dtype::from_header(&info.dtype).is_none() {
            return Err(format!(
                "`{path}`: tensor `{name}` has dtype {}; load reads only F32, F16 and BF16",
                info.dtype
            ));
        }
        Ok(info)
    }

    /// The shape the checker gives `load(path, name)`.
    pub fn shape(&self, path: &str, name: &str) -> Result<Vec<usize>, String> {
        self.info(path, name).map(|i| i.shape)
    }

    /// The values `load(path, name)` evaluates to.
    pub fn read(&self, path: &str, name: &str) -> Result<Tensor, String> {
        self.get(path)?.read_f32(name).map_err(|e| e.message)
    }
}
