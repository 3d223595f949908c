"""A Python client of the billing services, generated from proto/.

Meters API usage, grants prepaid credits and reads the balance against
`billing up`:

    pip install -r requirements.txt
    export BILLING_API_KEY=sk_...        # printed by `billing up`
    python billing_example.py

Addresses default to `billing up`'s ports; override them with METER_ADDR
and LEDGER_ADDR. Stubs are generated from ../../proto at start-up with
grpcio-tools, into a temporary directory.
"""

import datetime
import os
import pathlib
import sys
import tempfile
import uuid

import grpc
from grpc_tools import protoc

PROTO_ROOT = pathlib.Path(__file__).resolve().parents[2] / "proto"
PROTOS = [
    "billing/common/v1/amount.proto",
    "billing/ledger/v1/ledger.proto",
    "billing/meter/v1/meter.proto",
]


def generate_stubs() -> None:
    """Compiles the protos into a temporary package and puts it on sys.path."""
    out = tempfile.mkdtemp(prefix="billing-stubs-")
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    for proto in PROTOS:
        status = protoc.main([
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            proto,
        ])
        if status != 0:
            sys.exit(f"protoc failed on {proto}")
    sys.path.insert(0, out)


def main() -> None:
    generate_stubs()
    from billing.common.v1 import amount_pb2
    from billing.ledger.v1 import ledger_pb2, ledger_pb2_grpc
    from billing.meter.v1 import meter_pb2, meter_pb2_grpc

    key = os.environ["BILLING_API_KEY"]
    auth = [("authorization", f"Bearer {key}")]
    meter = meter_pb2_grpc.MeterServiceStub(
        grpc.insecure_channel(os.environ.get("METER_ADDR", "localhost:50051")))
    ledger = ledger_pb2_grpc.LedgerServiceStub(
        grpc.insecure_channel(os.environ.get("LEDGER_ADDR", "localhost:50052")))
    customer = os.environ.get("CUSTOMER", f"cus_python_{uuid.uuid4().hex[:8]}")

    # A meter summing the "value" of "py_request" events (request_id: safe to re-run).
    created = meter.CreateMeter(meter_pb2.CreateMeterRequest(
        request_id="python-example-meter",
        event_name="py_request",
        display_name="Requests from Python",
        aggregation=meter_pb2.AGGREGATION_SUM,
    ), metadata=auth).meter
    print(f"meter {created.id} ({created.event_name})")

    # Three events; the third repeats an identifier and counts once.
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    events = []
    for identifier, value in [("a", "12"), ("b", "30.5"), ("a", "12")]:
        event = meter_pb2.MeterEvent(
            event_name="py_request",
            identifier=f"{customer}-{identifier}",
            payload={"customer": customer, "value": value},
        )
        event.timestamp.FromDatetime(now)
        events.append(event)
    ingested = meter.IngestEvents(meter_pb2.IngestEventsRequest(events=events), metadata=auth)
    print(f"ingested: {ingested.accepted} accepted, {ingested.duplicate} duplicate")

    usage = meter.GetUsage(meter_pb2.GetUsageRequest(
        customer=customer,
        meter=created.id,
        start_time=_timestamp(now - datetime.timedelta(hours=1)),
        end_time=_timestamp(now + datetime.timedelta(hours=1)),
    ), metadata=auth)
    print(f"usage: {usage.total.value}")

    # $25.00 of prepaid credits for metered prices.
    grant = ledger.CreateCreditGrant(ledger_pb2.CreateCreditGrantRequest(
        request_id=f"python-example-grant-{customer}",
        customer=customer,
        name="Prepaid credits",
        amount=amount_pb2.Amount(monetary=amount_pb2.MonetaryAmount(currency="usd", value=2500)),
        applicability_config=ledger_pb2.ApplicabilityConfig(
            scope=ledger_pb2.ApplicabilityScope(price_type=ledger_pb2.PRICE_TYPE_METERED)),
    ), metadata=auth).credit_grant
    print(f"grant {grant.id}")

    summary = ledger.GetCreditBalanceSummary(
        ledger_pb2.GetCreditBalanceSummaryRequest(customer=customer), metadata=auth)
    for balance in summary.balances:
        money = balance.available_balance.monetary
        print(f"available balance: {money.value} {money.currency}")

    # A clear error names the field.
    try:
        ledger.CreateCreditGrant(ledger_pb2.CreateCreditGrantRequest(customer=customer), metadata=auth)
    except grpc.RpcError as error:
        print(f"invalid grant refused: {error.code().name}: {error.details()}")


def _timestamp(moment):
    from google.protobuf import timestamp_pb2
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


if __name__ == "__main__":
    main()
