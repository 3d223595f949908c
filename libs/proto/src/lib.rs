//! Generated protobuf and gRPC types for the billing services.
//!
//! Only the `grpc/` modules of the services use these types; everything else
//! works with domain types converted at the edge.

#![allow(missing_docs, clippy::doc_markdown, clippy::large_enum_variant)]

/// Encoded `FileDescriptorSet` of every billing proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/billing_descriptor.bin"));

/// `billing.common.v1`: shared messages.
pub mod common {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("billing.common.v1");
    }
}

/// `billing.ledger.v1`: the credit ledger.
pub mod ledger {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("billing.ledger.v1");
    }
}

/// `billing.meter.v1`: meters and usage.
pub mod meter {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("billing.meter.v1");
    }
}

/// `billing.invoicing.v1`: customers and invoices.
pub mod invoicing {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("billing.invoicing.v1");
    }
}
