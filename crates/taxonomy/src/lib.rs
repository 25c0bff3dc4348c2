//! The bounce reason taxonomy: the data (categories, reasons, phrases,
//! code fallbacks), its validation, and the classifier built from it.
//!
//! A crate of its own so that the classifier, the hot path of the stream
//! job, builds and benchmarks without the query engine.

pub mod codes;
mod dfa;
pub mod matcher;
pub mod model;
pub mod normalize;

pub use matcher::{Classifier, Matched, Reply, Rule, Verdict};
pub use model::{
    BUILTIN_TAXONOMY, CATEGORY_IDS, Category, Reason, Severity, Taxonomy, TaxonomyError,
    UNCLASSIFIED,
};
