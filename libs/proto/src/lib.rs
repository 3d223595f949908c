//! Generated protobuf and gRPC types for the billing services.
//!
//! Only the `grpc/` modules of the services use these types; everything else
//! works with domain types converted at the edge.

#![allow(missing_docs, clippy::doc_markdown, clippy::large_enum_variant)]

pub mod codec;
pub mod descriptors;
pub mod json;
pub mod strings;

/// Encoded `FileDescriptorSet` of every billing proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/billing_descriptor.bin"));

/// Encoded `FileDescriptorSet` of the google.rpc error details the services
/// send (`google.rpc.BadRequest`, `google.rpc.ErrorInfo`), for server
/// reflection: a client such as `grpcurl -format-error` decodes them.
pub const GOOGLE_RPC_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc_descriptor.bin"));

/// `billing.events.v1`: each service's event feed.
pub mod events {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("billing.events.v1");
    }
}

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

/// `billing.webhooks.v1`: webhook endpoints and deliveries (the notifier).
pub mod webhooks {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("billing.webhooks.v1");
    }
}

/// A request message with an AIP-155 `request_id` field.
pub trait HasRequestId: prost::Message + Clone + Sized {
    /// Names the method in the request fingerprint, so one key cannot serve two methods.
    const METHOD: &'static str;
    /// The client's key; empty when none.
    fn request_id(&self) -> &str;
    /// Clears the key (the fingerprint covers everything else).
    fn clear_request_id(&mut self);
}

/// A hold's fingerprint covers what is asked (customer, amount, timeout):
/// `unbilled` is the caller's snapshot of the customer's usage, which a
/// retry recomputes, so a retry with a newer figure is the same request.
impl HasRequestId for ledger::v1::CreateCreditHoldRequest {
    const METHOD: &'static str = "CreateCreditHoldRequest";
    fn request_id(&self) -> &str {
        &self.request_id
    }
    fn clear_request_id(&mut self) {
        self.request_id.clear();
        self.unbilled = None;
    }
}

macro_rules! has_request_id {
    ($($request:ty),* $(,)?) => {$(
        impl HasRequestId for $request {
            const METHOD: &'static str = stringify!($request);
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn clear_request_id(&mut self) {
                self.request_id.clear();
            }
        }
    )*};
}

has_request_id!(
    ledger::v1::CreatePricingUnitRequest,
    ledger::v1::UpdatePricingUnitRequest,
    ledger::v1::CreateCreditGrantRequest,
    ledger::v1::UpdateCreditGrantRequest,
    ledger::v1::VoidCreditGrantRequest,
    ledger::v1::ExpireCreditGrantRequest,
    ledger::v1::RolloverCreditGrantsRequest,
    ledger::v1::ActivateCreditGrantRequest,
    ledger::v1::CreateBalanceAlertRequest,
    meter::v1::CreateMeterRequest,
    meter::v1::UpdateMeterRequest,
    meter::v1::DeactivateMeterRequest,
    meter::v1::ReactivateMeterRequest,
    invoicing::v1::CreateCustomerRequest,
    invoicing::v1::UpdateCustomerRequest,
    invoicing::v1::CreatePriceRequest,
    invoicing::v1::CreateSubscriptionRequest,
    invoicing::v1::CancelSubscriptionRequest,
    invoicing::v1::CreateInvoiceRequest,
    invoicing::v1::CreateCreditPurchaseRequest,
    invoicing::v1::SetAutoTopUpRequest,
    invoicing::v1::DisableAutoTopUpRequest,
    invoicing::v1::FinalizeInvoiceRequest,
    invoicing::v1::VoidInvoiceRequest,
    invoicing::v1::MarkInvoicePaidRequest,
    invoicing::v1::DeactivatePriceRequest,
    webhooks::v1::CreateWebhookEndpointRequest,
    webhooks::v1::UpdateWebhookEndpointRequest,
    webhooks::v1::RotateWebhookEndpointSecretRequest,
);
