"""A Python client of the billing services, generated from proto/.

Bills one customer end to end against `billing up`: a customer, a meter and
a price, a subscription, usage (one event sent twice), prepaid credits, then
an invoice that the credits pay, and an invalid request whose BadRequest
details name the field:

    pip install -r requirements.txt
    python billing_example.py            # run from the repository root

The API key is BILLING_API_KEY, or else the development key `billing up`
saved in data/dev_api_key. Addresses default to `billing up`'s ports;
override them with METER_ADDR, LEDGER_ADDR and INVOICING_ADDR. Stubs are
generated from ../../proto at start-up with grpcio-tools, into a temporary
directory that is removed at exit.
"""

import datetime
import os
import pathlib
import sys
import tempfile
import uuid

import grpc
from grpc_status import rpc_status
from google.rpc import error_details_pb2
from grpc_tools import protoc

REPO = pathlib.Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
PROTOS = [
    "billing/common/v1/amount.proto",
    "billing/ledger/v1/ledger.proto",
    "billing/meter/v1/meter.proto",
    "billing/invoicing/v1/invoicing.proto",
]


def generate_stubs(out: str) -> None:
    """Compiles the protos into `out` and puts it on sys.path."""
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


def api_key() -> str:
    """BILLING_API_KEY, or the key `billing up` saved."""
    key = os.environ.get("BILLING_API_KEY", "").strip()
    if key:
        return key
    for saved in [pathlib.Path("data/dev_api_key"), REPO / "data" / "dev_api_key"]:
        if saved.is_file():
            return saved.read_text().strip()
    sys.exit("set BILLING_API_KEY, or start `billing up` (it saves data/dev_api_key)")


def with_stubs(run, prefix: str = "billing-stubs-") -> None:
    """Runs `run` with the generated stubs importable (in a temporary directory)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as stubs:
        generate_stubs(stubs)
        run()


def connect():
    """Stubs of meter-ingest, the ledger and invoicing (METER_ADDR, LEDGER_ADDR,
    INVOICING_ADDR, default `billing up`'s ports) and the calls' metadata."""
    from billing.invoicing.v1 import invoicing_pb2_grpc
    from billing.ledger.v1 import ledger_pb2_grpc
    from billing.meter.v1 import meter_pb2_grpc

    meter = meter_pb2_grpc.MeterServiceStub(
        grpc.insecure_channel(os.environ.get("METER_ADDR", "localhost:50051")))
    ledger = ledger_pb2_grpc.LedgerServiceStub(
        grpc.insecure_channel(os.environ.get("LEDGER_ADDR", "localhost:50052")))
    invoicing = invoicing_pb2_grpc.InvoicingServiceStub(
        grpc.insecure_channel(os.environ.get("INVOICING_ADDR", "localhost:50053")))
    return meter, ledger, invoicing, [("authorization", f"Bearer {api_key()}")]


def main() -> None:
    with_stubs(run)


def run() -> None:
    from billing.common.v1 import amount_pb2
    from billing.invoicing.v1 import invoicing_pb2
    from billing.ledger.v1 import ledger_pb2
    from billing.meter.v1 import meter_pb2

    meter, ledger, invoicing, auth = connect()
    run_id = uuid.uuid4().hex[:8]

    # What is sold, created once (request_id: safe to re-run): a meter summing
    # the "value" of "py_request" events, and a price of 10 cents per unit.
    created = meter.CreateMeter(meter_pb2.CreateMeterRequest(
        request_id="python-example-meter",
        event_name="py_request",
        display_name="Requests from Python",
        aggregation=meter_pb2.AGGREGATION_SUM,
    ), metadata=auth).meter
    print(f"meter {created.id} ({created.event_name})")
    price = invoicing.CreatePrice(invoicing_pb2.CreatePriceRequest(
        request_id="python-example-price",
        currency="usd",
        meter=created.id,
        billing_scheme=invoicing_pb2.BILLING_SCHEME_PER_UNIT,
        unit_amount_decimal="10",
        nickname="Python requests",
    ), metadata=auth).price

    # A new customer each run, subscribed from a minute ago.
    customer = invoicing.CreateCustomer(invoicing_pb2.CreateCustomerRequest(
        request_id=f"python-example-customer-{run_id}",
        name="Python Co",
        email="billing@python.test",
    ), metadata=auth).customer.id
    print(f"customer {customer}")
    now = datetime.datetime.now(datetime.timezone.utc)
    subscription = invoicing.CreateSubscription(invoicing_pb2.CreateSubscriptionRequest(
        request_id=f"python-example-subscription-{run_id}",
        customer=customer,
        items=[invoicing_pb2.SubscriptionItemInput(price=price.id)],
        billing_interval=invoicing_pb2.BILLING_INTERVAL_MONTH,
        start_date=_timestamp(now - datetime.timedelta(minutes=1)),
    ), metadata=auth).subscription

    # Three events half a minute ago; the third repeats an identifier and counts once.
    events = []
    for identifier, value in [("a", "12"), ("b", "30.5"), ("a", "12")]:
        event = meter_pb2.MeterEvent(
            event_name="py_request",
            identifier=f"{customer}-{identifier}",
            payload={"customer": customer, "value": value},
        )
        event.timestamp.CopyFrom(_timestamp(now - datetime.timedelta(seconds=30)))
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
        request_id=f"python-example-grant-{run_id}",
        customer=customer,
        name="Prepaid credits",
        amount=amount_pb2.Amount(monetary=amount_pb2.MonetaryAmount(currency="usd", value=2500)),
        applicability_config=ledger_pb2.ApplicabilityConfig(
            scope=ledger_pb2.ApplicabilityScope(price_type=ledger_pb2.PRICE_TYPE_METERED)),
    ), metadata=auth).credit_grant
    print(f"grant {grant.id}")
    print(f"available balance: {_available(ledger, ledger_pb2, customer, auth)} usd")

    # Cancelling now closes the partial period into a draft; finalizing it
    # applies the credits exactly once: 42.5 units x 10 cents = 425 cents.
    draft = invoicing.CancelSubscription(invoicing_pb2.CancelSubscriptionRequest(
        request_id=f"python-example-cancel-{run_id}", id=subscription.id,
    ), metadata=auth).final_invoice
    invoice = invoicing.FinalizeInvoice(invoicing_pb2.FinalizeInvoiceRequest(
        request_id=f"python-example-finalize-{run_id}", id=draft.id,
    ), metadata=auth).invoice
    total = invoice.totals[0]
    print(
        f"invoice {invoice.id}: {invoicing_pb2.InvoiceStatus.Name(invoice.status)}, "
        f"subtotal {total.subtotal.monetary.value}, "
        f"credits applied {total.total_credits_applied.monetary.value}, "
        f"amount due {total.amount_due.monetary.value}"
    )
    print(f"available balance after the invoice: "
          f"{_available(ledger, ledger_pb2, customer, auth)} usd")

    # An invalid request: INVALID_ARGUMENT with a google.rpc.BadRequest that
    # names each bad field.
    try:
        ledger.CreateCreditGrant(ledger_pb2.CreateCreditGrantRequest(customer=customer),
                                 metadata=auth)
    except grpc.RpcError as error:
        print(f"invalid grant refused: {error.code().name}")
        status = rpc_status.from_call(error)
        for detail in status.details if status else []:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                for violation in bad_request.field_violations:
                    print(f"  field {violation.field}: {violation.description}")


def _available(ledger, ledger_pb2, customer, auth) -> int:
    summary = ledger.GetCreditBalanceSummary(
        ledger_pb2.GetCreditBalanceSummaryRequest(customer=customer), metadata=auth)
    return sum(b.available_balance.monetary.value for b in summary.balances)


def _timestamp(moment):
    from google.protobuf import timestamp_pb2
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


if __name__ == "__main__":
    main()
