//! The embedded descriptor set, decoded once: what the JSON rendering and
//! the peer channel's choice of how to read an answer look things up in.

use std::sync::OnceLock;

use prost_reflect::DescriptorPool;

/// The billing protos' descriptors, decoded on first use; the error text
/// when the embedded set is unreadable (a build problem).
pub(crate) fn pool() -> Result<&'static DescriptorPool, &'static str> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(String::as_str)
}

/// Whether the gRPC path `/package.Service/Method` names one of the billing
/// protos' unary methods (one request, one answer). A streaming method, or
/// one these protos do not declare, is not.
pub fn is_unary(path: &str) -> bool {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return false;
    };
    pool()
        .ok()
        .and_then(|pool| pool.get_service_by_name(service))
        .and_then(|service| service.methods().find(|m| m.name() == method))
        .is_some_and(|m| !m.is_client_streaming() && !m.is_server_streaming())
}

#[cfg(test)]
mod tests {
    use super::is_unary;

    #[test]
    fn only_declared_unary_methods_are_unary() {
        assert!(is_unary("/billing.events.v1.EventService/ListEvents"));
        assert!(is_unary("/billing.ledger.v1.LedgerService/ApplyCredits"));
        assert!(!is_unary("/billing.events.v1.EventService/WatchEvents"));
        assert!(!is_unary(
            "/billing.ledger.v1.LedgerService/ExportLedgerEntries"
        ));
        assert!(!is_unary("/billing.meter.v1.MeterService/StreamEvents"));
        assert!(!is_unary("/grpc.health.v1.Health/Check"));
        assert!(!is_unary("/grpc.health.v1.Health/Watch"));
        assert!(!is_unary("/billing.ledger.v1.LedgerService/NoSuchMethod"));
        assert!(!is_unary("billing.ledger.v1.LedgerService"));
    }
}
