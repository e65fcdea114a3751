//! Bounds on what one template may ask of the decoder.

/// Bounds a template must respect to be compiled; each breach is a typed
/// [`CompileError`](crate::CompileError) naming the value given and the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Field Specifiers per template. Default 1024; a 65535-octet Template Set holds at most
    /// 16382 of them.
    pub max_fields: usize,
    /// Columns per program (fields that are kept). Default 1024.
    pub max_columns: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_fields: 1024,
            max_columns: 1024,
        }
    }
}
