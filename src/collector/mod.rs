//! The Collecting Process: sessions, templates, held data, sequence accounting, and the
//! decoder core that turns Messages into batches.

pub mod batch;
pub mod decode;
pub mod pending;
pub mod sequence;
pub mod session;
pub mod templates;
