//! Which grants pay which lines, in which order: each of the six ordering
//! keys, scopes, effective and expiry windows, assets, and several lines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::ledger::v1 as pb;
use chrono::TimeDelta;
use common::*;

#[derive(Clone)]
struct GrantSpec {
    name: &'static str,
    value: i64,
    currency: &'static str,
    priority: Option<u32>,
    promotional: bool,
    effective_h: i64,
    expires_h: Option<i64>,
    created_s: i64,
    prices: Option<Vec<&'static str>>,
}

fn g(name: &'static str, value: i64) -> GrantSpec {
    GrantSpec {
        name,
        value,
        currency: "usd",
        priority: None,
        promotional: false,
        effective_h: -24,
        expires_h: None,
        created_s: 0,
        prices: None,
    }
}

impl GrantSpec {
    fn priority(mut self, p: u32) -> Self {
        self.priority = Some(p);
        self
    }
    fn promo(mut self) -> Self {
        self.promotional = true;
        self
    }
    fn effective(mut self, hours: i64) -> Self {
        self.effective_h = hours;
        self
    }
    fn expires(mut self, hours: i64) -> Self {
        self.expires_h = Some(hours);
        self
    }
    fn created(mut self, seconds: i64) -> Self {
        self.created_s = seconds;
        self
    }
    fn prices(mut self, prices: &[&'static str]) -> Self {
        self.prices = Some(prices.to_vec());
        self
    }
    fn currency(mut self, currency: &'static str) -> Self {
        self.currency = currency;
        self
    }
}

struct Case {
    name: &'static str,
    grants: Vec<GrantSpec>,
    lines: Vec<(&'static str, &'static str, i64)>,
    expected: Vec<(&'static str, &'static str, i64)>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "priority ascending",
            grants: vec![
                g("p60", 100).priority(60),
                g("p40", 100).priority(40),
                g("p0", 10).priority(0),
            ],
            lines: vec![("l1", "price_a", 150)],
            expected: vec![("l1", "p0", 10), ("l1", "p40", 100), ("l1", "p60", 40)],
        },
        Case {
            name: "expires_at ascending, no expiry last",
            grants: vec![
                g("never", 100),
                g("late", 100).expires(48),
                g("soon", 100).expires(2),
            ],
            lines: vec![("l1", "price_a", 250)],
            expected: vec![
                ("l1", "soon", 100),
                ("l1", "late", 100),
                ("l1", "never", 50),
            ],
        },
        Case {
            name: "promotional before paid",
            grants: vec![g("paid", 100), g("promo", 100).promo()],
            lines: vec![("l1", "price_a", 150)],
            expected: vec![("l1", "promo", 100), ("l1", "paid", 50)],
        },
        Case {
            name: "effective_at ascending",
            grants: vec![
                g("newer", 100).effective(-1),
                g("older", 100).effective(-10),
            ],
            lines: vec![("l1", "price_a", 150)],
            expected: vec![("l1", "older", 100), ("l1", "newer", 50)],
        },
        Case {
            name: "created ascending beats id",
            // "second" is created later in wall order (larger id) but with an earlier clock.
            grants: vec![g("first", 100).created(10), g("second", 100).created(5)],
            lines: vec![("l1", "price_a", 150)],
            expected: vec![("l1", "second", 100), ("l1", "first", 50)],
        },
        Case {
            name: "id ascending when everything else ties",
            grants: vec![g("a", 100), g("b", 100), g("c", 100)],
            lines: vec![("l1", "price_a", 250)],
            expected: vec![("l1", "a", 100), ("l1", "b", 100), ("l1", "c", 50)],
        },
        Case {
            name: "priority outranks expiry and category",
            grants: vec![
                g("promo_soon", 100).promo().expires(1).priority(51),
                g("paid_never", 100),
            ],
            lines: vec![("l1", "price_a", 150)],
            expected: vec![("l1", "paid_never", 100), ("l1", "promo_soon", 50)],
        },
        Case {
            name: "scoped grants pay only their prices, METERED pays all",
            grants: vec![
                g("only_b", 100).prices(&["price_b"]).priority(0),
                g("metered", 100),
            ],
            lines: vec![("l1", "price_a", 60), ("l2", "price_b", 120)],
            expected: vec![
                ("l1", "metered", 60),
                ("l2", "only_b", 100),
                ("l2", "metered", 20),
            ],
        },
        Case {
            name: "not yet effective and expired grants are skipped",
            grants: vec![
                g("future", 100).effective(1).priority(0),
                g("expired", 100).expires(-1).priority(0),
                g("expires_at_period_end", 100).expires(0).priority(0),
                g("ok", 100),
            ],
            lines: vec![("l1", "price_a", 150)],
            expected: vec![("l1", "ok", 100)],
        },
        Case {
            name: "grants of another asset are skipped",
            grants: vec![g("eur", 100).currency("eur").priority(0), g("usd", 100)],
            lines: vec![("l1", "price_a", 50)],
            expected: vec![("l1", "usd", 50)],
        },
        Case {
            name: "several lines drain grants in order",
            grants: vec![g("first", 100).priority(10), g("second", 100).priority(20)],
            lines: vec![
                ("l1", "price_a", 70),
                ("l2", "price_a", 70),
                ("l3", "price_a", 70),
            ],
            expected: vec![
                ("l1", "first", 70),
                ("l2", "first", 30),
                ("l2", "second", 40),
                ("l3", "second", 60),
            ],
        },
    ]
}

async fn check(t: &TestLedger, index: usize, case: &Case) {
    let customer = format!("cus_order_{index}");
    let mut names = std::collections::HashMap::new();
    for spec in &case.grants {
        t.clock.set(t0() + TimeDelta::seconds(spec.created_s));
        let request = pb::CreateCreditGrantRequest {
            customer: customer.clone(),
            name: spec.name.into(),
            amount: money(spec.currency, spec.value),
            applicability_config: Some(pb::ApplicabilityConfig {
                scope: Some(match &spec.prices {
                    None => pb::ApplicabilityScope {
                        price_type: pb::PriceType::Metered.into(),
                        prices: vec![],
                    },
                    Some(prices) => pb::ApplicabilityScope {
                        price_type: 0,
                        prices: prices.iter().map(|p| p.to_string()).collect(),
                    },
                }),
            }),
            category: if spec.promotional {
                pb::CreditGrantCategory::Promotional.into()
            } else {
                pb::CreditGrantCategory::Paid.into()
            },
            effective_at: ts(t0() + TimeDelta::hours(spec.effective_h)),
            expires_at: spec
                .expires_h
                .map(|h| billing_server::time::to_proto(t0() + TimeDelta::hours(h))),
            priority: spec.priority,
            ..Default::default()
        };
        let grant = create_grant(t, request).await;
        names.insert(grant.id, spec.name);
    }
    t.clock.set(t0());
    let lines = case
        .lines
        .iter()
        .map(|(id, price, value)| line(id, price, *value))
        .collect();
    let response = t
        .client()
        .apply_credits(authed(
            KEY_A,
            apply_request(t, &customer, &format!("in_order_{index}"), lines),
        ))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(String, &str, i64)> = response
        .applications
        .iter()
        .map(|a| {
            (
                a.invoice_line_item.clone(),
                names[&a.credit_grant],
                value_of(&a.amount),
            )
        })
        .collect();
    let expected: Vec<(String, &str, i64)> = case
        .expected
        .iter()
        .map(|(l, n, v)| (l.to_string(), *n, *v))
        .collect();
    assert_eq!(got, expected, "case {:?}", case.name);
}

async fn application_order(t: &TestLedger) {
    for (index, case) in cases().iter().enumerate() {
        check(t, index, case).await;
    }
    assert_audit_clean(t).await;
}

backends!(application_order);
