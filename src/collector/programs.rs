//! Compiled programs, shared: identical templates from any exporter and any protocol compile
//! once and share one `Arc<Program>` (and so one batch of rows).

use std::sync::{Arc, Weak};

use flowvm_vm::wire::template::TemplateDef;
use flowvm_vm::{CompileError, Compiler, Program};

use crate::collector::FastMap;

/// The cache is swept of dead entries no more often than at this size.
const SWEEP_MIN: usize = 1024;

/// Programs by definition, held weakly: a program lives as long as a template (or a batch)
/// uses it.
#[derive(Debug)]
pub struct ProgramCache {
    compiler: Compiler,
    programs: FastMap<TemplateDef, Weak<Program>>,
    /// Size at which dead entries are swept before the next insert.
    sweep_at: usize,
}

impl ProgramCache {
    /// An empty cache compiling with `compiler`.
    pub fn new(compiler: Compiler) -> Self {
        Self {
            compiler,
            programs: FastMap::default(),
            sweep_at: SWEEP_MIN,
        }
    }

    /// The program of `def`: the live one if an identical definition has one, else compiled.
    ///
    /// # Errors
    /// The compiler's, for a template no program can decode.
    pub fn compile(&mut self, def: &TemplateDef) -> Result<Arc<Program>, CompileError> {
        if let Some(program) = self.programs.get(def).and_then(Weak::upgrade) {
            return Ok(program);
        }
        let program = Arc::new(self.compiler.compile(def)?);
        // Definitions compiled but never installed (a full table, a Message found malformed
        // later) leave dead entries until the next sweep: a flood of distinct definitions must
        // not grow the map in between. Sweeping at twice the live size keeps it amortised.
        if self.programs.len() >= self.sweep_at {
            self.sweep();
            self.sweep_at = (self.programs.len() * 2).max(SWEEP_MIN);
        }
        self.programs.insert(def.clone(), Arc::downgrade(&program));
        Ok(program)
    }

    /// Forgets the definitions whose program nothing uses any more.
    pub fn sweep(&mut self) {
        self.programs.retain(|_, p| p.strong_count() > 0);
    }
}
