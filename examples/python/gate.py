"""Gating a product with CheckAccess: reserve, do the work, meter it, release.

Against `billing up`: a meter of "py_render" events at 1 cent per unit, a
customer whose subscription BLOCKs overage, 500 cents of credits. Each render
reserves 100 cents through CheckAccess (a ledger hold, so concurrent renders
never spend the same credits), runs only when allowed, reports its usage,
then releases the hold. The sixth render is refused: the credits are used.

    pip install -r requirements.txt
    python gate.py            # run from the repository root

The API key is BILLING_API_KEY, or else the development key `billing up`
saved in data/dev_api_key; addresses as in billing_example.py.
"""

import datetime
import uuid

from billing_example import _timestamp, connect, with_stubs

RENDER_COST = 100  # cents (100 units at 1 cent)


def main() -> None:
    with_stubs(run, prefix="billing-gate-stubs-")


def run() -> None:
    from billing.common.v1 import amount_pb2
    from billing.invoicing.v1 import invoicing_pb2
    from billing.ledger.v1 import ledger_pb2
    from billing.meter.v1 import meter_pb2

    meter, ledger, invoicing, auth = connect()
    run_id = uuid.uuid4().hex[:8]
    cents = lambda value: amount_pb2.Amount(  # noqa: E731
        monetary=amount_pb2.MonetaryAmount(currency="usd", value=value))

    renders = meter.CreateMeter(meter_pb2.CreateMeterRequest(
        request_id="python-gate-meter",
        event_name="py_render",
        display_name="Renders from Python",
        aggregation=meter_pb2.AGGREGATION_SUM,
    ), metadata=auth).meter
    price = invoicing.CreatePrice(invoicing_pb2.CreatePriceRequest(
        request_id="python-gate-price",
        currency="usd",
        meter=renders.id,
        billing_scheme=invoicing_pb2.BILLING_SCHEME_PER_UNIT,
        unit_amount_decimal="1",
    ), metadata=auth).price
    customer = invoicing.CreateCustomer(invoicing_pb2.CreateCustomerRequest(
        request_id=f"python-gate-customer-{run_id}", name="Render Co",
    ), metadata=auth).customer.id
    invoicing.CreateSubscription(invoicing_pb2.CreateSubscriptionRequest(
        request_id=f"python-gate-subscription-{run_id}",
        customer=customer,
        items=[invoicing_pb2.SubscriptionItemInput(price=price.id)],
        billing_interval=invoicing_pb2.BILLING_INTERVAL_MONTH,
        overage=invoicing_pb2.OveragePolicy(mode=invoicing_pb2.OVERAGE_MODE_BLOCK),
    ), metadata=auth)
    ledger.CreateCreditGrant(ledger_pb2.CreateCreditGrantRequest(
        request_id=f"python-gate-grant-{run_id}",
        customer=customer,
        name="Prepaid renders",
        amount=cents(500),
        applicability_config=ledger_pb2.ApplicabilityConfig(
            scope=ledger_pb2.ApplicabilityScope(price_type=ledger_pb2.PRICE_TYPE_METERED)),
    ), metadata=auth)

    # The gate: one CheckAccess per unit of work.
    for n in range(1, 7):
        job = f"render-{run_id}-{n}"
        check = invoicing.CheckAccess(invoicing_pb2.CheckAccessRequest(
            request_id=job,  # a retry of this check returns the same hold
            customer=customer,
            meter=renders.id,
            reserve=cents(RENDER_COST),
            hold_timeout_seconds=300,  # if we crash, the hold lapses by itself
        ), metadata=auth)
        if not check.allowed:
            reason = invoicing_pb2.AccessReason.Name(check.reason)
            print(f"render {n}: refused, {reason}, "
                  f"ongoing balance {check.balance.ongoing_balance.monetary.value}")
            break
        # ... the work happens here ...
        event = meter_pb2.MeterEvent(
            event_name="py_render",
            identifier=job,  # the usage is sent once, whatever retries happen
            payload={"customer": customer, "value": str(RENDER_COST)},
        )
        event.timestamp.CopyFrom(_timestamp(datetime.datetime.now(datetime.timezone.utc)))
        meter.IngestEvents(meter_pb2.IngestEventsRequest(events=[event]), metadata=auth)
        ledger.ReleaseCreditHold(ledger_pb2.ReleaseCreditHoldRequest(id=check.hold), metadata=auth)
        print(f"render {n}: done, ongoing balance with its hold "
              f"{check.balance.ongoing_balance.monetary.value}")

    balance = invoicing.GetCustomerBalance(
        invoicing_pb2.GetCustomerBalanceRequest(customer=customer), metadata=auth).balances[0]
    print(f"available {balance.available.monetary.value}, "
          f"unbilled usage {balance.unbilled_usage.monetary.value}, "
          f"reserved {balance.credits_reserved.monetary.value}, "
          f"ongoing {balance.ongoing_balance.monetary.value}")


if __name__ == "__main__":
    main()
