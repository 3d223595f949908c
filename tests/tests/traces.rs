//! One FinalizeInvoice is one trace across the three processes: the OTLP
//! spans they export to a collector implemented here (with the
//! opentelemetry-proto types) chain from invoicing's server span, through
//! its client spans, to the ledger's ApplyCredits and meter-ingest's
//! BatchGetUsage server spans.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_testkit::Backend;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

/// A span with the service that exported it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    span: Span,
}

#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(s.clone()),
            Some(Value::IntValue(i)) => Some(i.to_string()),
            _ => None,
        }
    })
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| string_attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Exported {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn start_collector() -> (Collector, std::net::SocketAddr) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (collector, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_is_one_trace_across_the_three_services() {
    let Some(dbs) = Databases::new(Backend::Sqlite).await else {
        return;
    };
    let (collector, collector_addr) = start_collector().await;
    let otel = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
    let ledger_process = ledger_with(&dbs.ledger, "127.0.0.1:0", &otel);
    let meter_process = meter_with(&dbs.meter, &otel);
    let invoicing_process = invoicing_with(
        &dbs.invoicing,
        ledger_process.addr,
        meter_process.addr,
        None,
        &otel,
    );
    let mut c = Clients::new(
        ledger_process.channel(),
        meter_process.channel(),
        invoicing_process.channel(),
    );

    let billed = setup(&mut c, "traced").await;
    let draft = close_first_period(&mut c, &billed).await;
    finalize(&mut c, &draft.id).await.unwrap();

    let finalize_name = "billing.invoicing.v1.InvoicingService/FinalizeInvoice";
    let deadline = Instant::now() + Duration::from_secs(30);
    let (root, trace) = loop {
        let spans = collector.spans.lock().unwrap().clone();
        if let Some(root) = spans.iter().find(|s| s.span.name == finalize_name) {
            let trace: Vec<Exported> = spans
                .iter()
                .filter(|s| s.span.trace_id == root.span.trace_id)
                .cloned()
                .collect();
            let has = |service: &str, name: &str| {
                trace
                    .iter()
                    .any(|s| s.service == service && s.span.name == name)
            };
            if has(
                "credit-ledger",
                "billing.ledger.v1.LedgerService/ApplyCredits",
            ) && has(
                "meter-ingest",
                "billing.meter.v1.MeterService/BatchGetUsage",
            ) {
                break (root.clone(), trace);
            }
        }
        assert!(Instant::now() < deadline, "spans never arrived: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The root: invoicing's server span with the RPC attributes and the account.
    assert_eq!(root.service, "invoicing");
    assert_eq!(root.span.kind, SpanKind::Server as i32);
    assert!(
        root.span.parent_span_id.is_empty(),
        "the client sent no traceparent"
    );
    let attributes = &root.span.attributes;
    assert_eq!(
        string_attribute(attributes, "rpc.system").as_deref(),
        Some("grpc")
    );
    assert_eq!(
        string_attribute(attributes, "rpc.service").as_deref(),
        Some("billing.invoicing.v1.InvoicingService")
    );
    assert_eq!(
        string_attribute(attributes, "rpc.method").as_deref(),
        Some("FinalizeInvoice")
    );
    assert_eq!(
        string_attribute(attributes, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_eq!(
        string_attribute(attributes, "account").as_deref(),
        Some("acct_e2e")
    );

    // Every server span of the other services descends from the root
    // through one of invoicing's client spans.
    let by_id: HashMap<Vec<u8>, &Exported> =
        trace.iter().map(|s| (s.span.span_id.clone(), s)).collect();
    for (service, name) in [
        (
            "credit-ledger",
            "billing.ledger.v1.LedgerService/ApplyCredits",
        ),
        (
            "meter-ingest",
            "billing.meter.v1.MeterService/BatchGetUsage",
        ),
    ] {
        let server = trace
            .iter()
            .find(|s| s.service == service && s.span.name == name)
            .unwrap();
        assert_eq!(server.span.kind, SpanKind::Server as i32);
        let client = by_id
            .get(&server.span.parent_span_id)
            .unwrap_or_else(|| panic!("{name}'s parent was not exported"));
        assert_eq!(client.service, "invoicing");
        assert_eq!(client.span.kind, SpanKind::Client as i32);
        assert_eq!(client.span.name, name, "the client span names the same RPC");
        let mut ancestor = client;
        while ancestor.span.span_id != root.span.span_id {
            ancestor = by_id
                .get(&ancestor.span.parent_span_id)
                .unwrap_or_else(|| panic!("{name} does not descend from FinalizeInvoice"));
        }
        assert_eq!(
            string_attribute(&server.span.attributes, "account").as_deref(),
            Some("acct_e2e")
        );
    }

    // The main ids ride on the server spans (the client spans in invoicing
    // have the same names: look at servers only).
    for (service, name, key, expected) in [
        ("invoicing", finalize_name, "id", draft.id.as_str()),
        (
            "credit-ledger",
            "billing.ledger.v1.LedgerService/ApplyCredits",
            "invoice",
            draft.id.as_str(),
        ),
        (
            "credit-ledger",
            "billing.ledger.v1.LedgerService/ApplyCredits",
            "customer",
            billed.customer.as_str(),
        ),
        (
            "meter-ingest",
            "billing.meter.v1.MeterService/BatchGetUsage",
            "customer",
            billed.customer.as_str(),
        ),
    ] {
        let servers: Vec<&Exported> = trace
            .iter()
            .filter(|s| {
                s.service == service
                    && s.span.name == name
                    && s.span.kind == SpanKind::Server as i32
            })
            .collect();
        assert!(!servers.is_empty());
        for server in servers {
            assert_eq!(
                string_attribute(&server.span.attributes, key).as_deref(),
                Some(expected),
                "{name} {key}"
            );
        }
    }

    drop(invoicing_process);
    drop(meter_process);
    drop(ledger_process);
    dbs.drop_all().await;
}
