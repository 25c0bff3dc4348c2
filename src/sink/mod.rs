//! The output side: the table layout on disk, the Arrow form of the two
//! tables, and the exactly-once commit protocol that writes them.

pub mod commit;
pub mod layout;
pub mod table;

pub use commit::{Checkpoint, Committer, Flush, FlushStats, SinkError, Totals};
pub use layout::{Layout, encode_org, org_partition_value};
pub use table::{
    DELIVERIES_SCHEMA, DeliveriesBuilder, PartitionRows, REJECTED_SCHEMA, RejectedRow,
    SourcePosition, Widths,
};
