//! One account of a simulation run: its client, its model, its seeded
//! sequence of operations and the checks of each answer.

use super::*;

/// One account's client, model and random sequence.
pub(super) struct Account {
    pub(super) index: u64,
    pub(super) key: String,
    pub(super) client: LedgerServiceClient<Channel>,
    pub(super) feed: EventServiceClient<Channel>,
    /// Customers are renewed every [`EPOCH_OPERATIONS`] operations.
    pub(super) epoch: u64,
    /// usd, eur and the account's pricing unit.
    pub(super) assets: Vec<String>,
    /// The grant requests the service accepted, with the grant made (this
    /// epoch's).
    pub(super) sent_grants: Vec<(pb::CreateCreditGrantRequest, String)>,
    pub(super) model: Ledger,
    pub(super) rng: Rng,
    pub(super) seed: u64,
    pub(super) done: u64,
    pub(super) retries: u64,
    pub(super) kinds: BTreeMap<&'static str, u64>,
}

impl Account {
    /// The account's pricing unit (created once, found again by its
    /// request id after a restart of the run).
    pub(super) async fn setup(&mut self) -> Result<(), String> {
        let request = pb::CreatePricingUnitRequest {
            request_id: format!("unit-{}-{}", self.seed, self.index),
            display_name: "Sim credits".into(),
            scale: UNIT_SCALE,
            conversion: None,
        };
        let unit = call!(self, create_pricing_unit, request)
            .map_err(|s| format!("pricing unit refused: {s:?}"))?
            .pricing_unit
            .ok_or("no pricing unit")?;
        self.assets.push(unit.id);
        Ok(())
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.below(items.len())]
    }

    fn asset(&mut self) -> String {
        self.assets[self.rng.below(self.assets.len())].clone()
    }

    /// A customer of the current epoch and the pool it draws on.
    fn customer(&mut self) -> (String, Vec<String>) {
        let (customer, pool) = CUSTOMERS[self.rng.below(CUSTOMERS.len())];
        let epoch = self.epoch;
        (
            format!("{customer}_{epoch}"),
            pool.iter().map(|s| format!("{s}_{epoch}")).collect(),
        )
    }

    /// The current epoch's customers.
    pub(super) fn customers(&self) -> Vec<String> {
        CUSTOMERS
            .iter()
            .map(|(c, _)| format!("{c}_{}", self.epoch))
            .collect()
    }

    /// Ends an epoch: a full check of its customers, then a fresh set of
    /// customers (so no customer's history grows without bound in a long
    /// run; the account's alerts and events carry on).
    async fn next_epoch(&mut self) -> Result<(), String> {
        for customer in self.customers() {
            self.check(&customer, true).await?;
        }
        self.model.new_epoch();
        self.sent_grants.clear();
        self.epoch += 1;
        Ok(())
    }

    pub(super) async fn step(&mut self) -> Result<(), String> {
        if self.done > 0 && self.done.is_multiple_of(EPOCH_OPERATIONS) {
            self.next_epoch()
                .await
                .map_err(|what| violation(self, &format!("end of epoch: {what}")))?;
        }
        let roll = self.rng.below(100);
        let kind = match roll {
            0..=17 => "grant",
            18..=19 => "regrant",
            20..=44 => "apply",
            45..=52 => "replay",
            53..=59 => "reverse",
            60..=64 => "void",
            65..=69 => "expire",
            70..=73 => "activate",
            74..=80 => "hold",
            81..=85 => "release",
            86..=87 => "alert",
            _ => "check",
        };
        *self.kinds.entry(kind).or_insert(0) += 1;
        let result = match kind {
            "grant" => self.grant().await,
            "regrant" => self.regrant().await,
            "apply" => self.apply().await,
            "replay" => self.replay().await,
            "reverse" => self.reverse().await,
            "void" | "expire" | "activate" => self.end_grant(kind).await,
            "hold" => self.hold().await,
            "release" => self.release().await,
            "alert" => self.alert().await,
            _ => {
                let (customer, _) = self.customer();
                self.check(&customer, false).await
            }
        };
        self.done += 1;
        result.map_err(|what| violation(self, &format!("{kind}: {what}")))
    }

    async fn grant(&mut self) -> Result<(), String> {
        let (customer, _) = self.customer();
        let customer = customer.as_str();
        let asset = self.asset();
        let asset = asset.as_str();
        let amount = 1 + self.rng.below(5_000) as i64;
        let priority = [None, Some(0), Some(10), Some(50), Some(100)][self.rng.below(5)];
        let promotional = self.rng.chance(40);
        let effective = [
            None,
            Some(at(2025, 1, 1)),
            Some(at(2025, 6, 1)),
            Some(at(2026, 1, 1)),
            Some(at(2098, 1, 1)),
        ][self.rng.below(5)];
        let expires = [None, None, Some(at(2097, 1, 1)), Some(at(2098, 6, 1))][self.rng.below(4)];
        let prices: Option<Vec<String>> = if self.rng.chance(50) {
            None
        } else {
            let mut chosen: Vec<String> = PRICES
                .iter()
                .filter(|_| self.rng.chance(50))
                .map(|p| (*p).to_owned())
                .collect();
            if chosen.is_empty() {
                chosen.push(PRICES[0].to_owned());
            }
            Some(chosen)
        };
        let shared = self.rng.chance(40);
        let pending = self.rng.chance(10);
        let request = pb::CreateCreditGrantRequest {
            request_id: format!("grant-{}-{}-{}", self.seed, self.index, self.done),
            customer: customer.into(),
            name: format!("sim {}", self.done),
            amount: money(asset, amount),
            applicability_config: Some(pb::ApplicabilityConfig {
                scope: Some(pb::ApplicabilityScope {
                    price_type: if prices.is_none() {
                        pb::PriceType::Metered.into()
                    } else {
                        0
                    },
                    prices: prices.clone().unwrap_or_default(),
                }),
            }),
            category: if promotional {
                pb::CreditGrantCategory::Promotional.into()
            } else {
                pb::CreditGrantCategory::Paid.into()
            },
            effective_at: effective.map(ts),
            expires_at: expires.map(ts),
            priority,
            shared_with_descendants: shared,
            pending_payment: pending,
            ..Default::default()
        };
        // With no effective date the grant starts now, before any expiry.
        let expected = model::check_grant(effective.unwrap_or(at(2026, 1, 1)), expires);
        let answer = call!(self, create_credit_grant, request);
        match (expected, answer) {
            (None, Ok(answer)) => {
                let grant = answer.credit_grant.ok_or("no grant in the answer")?;
                self.sent_grants.push((request.clone(), grant.id.clone()));
                let effective_at = grant.effective_at.map_or(0, |t| t.seconds);
                self.model.add_grant(
                    model::Grant {
                        id: grant.id,
                        customer: customer.into(),
                        asset: asset.into(),
                        amount,
                        available: amount,
                        applied_total: 0,
                        priority: priority.unwrap_or(50),
                        promotional,
                        effective_at,
                        expires_at: expires,
                        prices,
                        shared,
                        voided: false,
                        expired: false,
                        pending,
                        created: 0,
                    },
                    now(),
                );
                Ok(())
            }
            (Some(field), Err(status)) => refusal(&Outcome::<()>::Invalid(field), &status),
            (expected, answer) => Err(format!("the model expected {expected:?}, got {answer:?}")),
        }
    }

    fn lines(&mut self) -> Vec<Line> {
        (0..1 + self.rng.below(3))
            .map(|k| Line {
                id: format!("il_{k}"),
                price: self.pick(PRICES).to_owned(),
                asset: self.asset(),
                amount: 1 + self.rng.below(3_000) as i64,
            })
            .collect()
    }

    async fn send_apply(
        &mut self,
        invoice: &str,
        request: &ApplyRequest,
        pool: &[String],
        preview: bool,
    ) -> Result<(), String> {
        let message = pb::ApplyCreditsRequest {
            customer: request.customer.clone(),
            invoice: invoice.to_owned(),
            period_end: Some(ts(request.period_end)),
            lines: request
                .lines
                .iter()
                .map(|l| pb::InvoiceLine {
                    invoice_line_item: l.id.clone(),
                    price: l.price.clone(),
                    amount: money(&l.asset, l.amount),
                })
                .collect(),
            preview,
            pool: pool.to_vec(),
        };
        let answer = call!(self, apply_credits, message).map(|answer| {
            answer
                .applications
                .iter()
                .map(|a| application(&a.invoice_line_item, &a.credit_grant, &a.amount))
                .collect()
        });
        let expected = self.model.apply(invoice, request, pool, preview, now());
        agree(invoice, &expected, answer)
    }

    async fn apply(&mut self) -> Result<(), String> {
        let (customer, pool) = self.customer();
        let request = ApplyRequest {
            customer,
            period_end: [
                at(2025, 3, 1),
                at(2026, 3, 1),
                at(2097, 6, 1),
                at(2098, 3, 1),
            ][self.rng.below(4)],
            lines: self.lines(),
        };
        let preview = self.rng.chance(10);
        let invoice = format!("in_sim_{}_{}_{}", self.seed, self.index, self.done);
        self.send_apply(&invoice, &request, &pool, preview).await
    }

    /// An applied invoice again: identical (the recorded answer) or with
    /// other lines (refused).
    async fn replay(&mut self) -> Result<(), String> {
        if self.model.applied.is_empty() {
            return Ok(());
        }
        let n = self.rng.below(self.model.applied.len());
        let Some((invoice, (request, _))) = self.model.applied.iter().nth(n) else {
            return Ok(());
        };
        let (invoice, mut request) = (invoice.clone(), request.clone());
        if self.rng.chance(25) {
            request.lines[0].amount += 1;
        }
        let suffix = format!("_{}", self.epoch);
        let pool = CUSTOMERS
            .iter()
            .find(|(c, _)| format!("{c}{suffix}") == request.customer)
            .map(|(_, p)| p.iter().map(|s| format!("{s}{suffix}")).collect::<Vec<_>>())
            .unwrap_or_default();
        self.send_apply(&invoice, &request, &pool, false).await
    }

    async fn reverse(&mut self) -> Result<(), String> {
        let invoice = if self.model.applied.is_empty() || self.rng.chance(10) {
            format!("in_never_{}_{}", self.index, self.done)
        } else {
            let n = self.rng.below(self.model.applied.len());
            self.model
                .applied
                .keys()
                .nth(n)
                .cloned()
                .unwrap_or_default()
        };

        let answer = call!(
            self,
            reverse_credits,
            pb::ReverseCreditsRequest {
                invoice: invoice.clone()
            }
        );
        let answer = answer.map(|answer| {
            answer
                .reversals
                .iter()
                .map(|r| application(&r.invoice_line_item, &r.credit_grant, &r.amount))
                .collect()
        });
        let expected = self.model.reverse(&invoice, now());
        agree(&invoice, &expected, answer)
    }

    async fn end_grant(&mut self, kind: &str) -> Result<(), String> {
        if self.model.grants.is_empty() {
            return Ok(());
        }
        let id = self.model.grants[self.rng.below(self.model.grants.len())]
            .id
            .clone();
        let request_id = format!("{kind}-{}-{}-{}", self.seed, self.index, self.done);
        let answer = match kind {
            "void" => {
                let request = pb::VoidCreditGrantRequest {
                    request_id,
                    id: id.clone(),
                };
                call!(self, void_credit_grant, request).map(|a| a.credit_grant)
            }
            "expire" => {
                let request = pb::ExpireCreditGrantRequest {
                    request_id,
                    id: id.clone(),
                };
                call!(self, expire_credit_grant, request).map(|a| a.credit_grant)
            }
            _ => {
                let request = pb::ActivateCreditGrantRequest {
                    request_id,
                    id: id.clone(),
                };
                call!(self, activate_credit_grant, request).map(|a| a.credit_grant)
            }
        };
        // ExpireCreditGrant moves the expiry to the service's now.
        let expired_at = match &answer {
            Ok(Some(grant)) => grant.expires_at.map_or(0, |t| t.seconds),
            _ => 0,
        };
        let now = now();
        let expected = match kind {
            "void" => self.model.void(&id, now),
            "expire" => self.model.expire(&id, expired_at.min(now)),
            _ => self.model.activate(&id, now),
        };
        match (&expected, answer) {
            (Outcome::Ok(()), Ok(Some(grant))) => {
                let got = value(&grant.available).1;
                let want = self.model.grant(&id).map_or(-1, |g| g.available);
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{id}: available {got}, the model {want}"))
                }
            }
            (_, Err(status)) => refusal(&expected, &status),
            (expected, answer) => Err(format!(
                "{id}: the model expected {expected:?}, got {answer:?}"
            )),
        }
    }

    /// A grant request sent again with its request id (a client's retry
    /// after a lost answer): the same grant, nothing new.
    async fn regrant(&mut self) -> Result<(), String> {
        if self.sent_grants.is_empty() {
            return Ok(());
        }
        let (request, id) = self.sent_grants[self.rng.below(self.sent_grants.len())].clone();
        let answer = call!(self, create_credit_grant, request)
            .map_err(|s| format!("{id} again: refused {s:?}"))?;
        let again = answer.credit_grant.map(|g| g.id);
        if again.as_deref() == Some(id.as_str()) {
            Ok(())
        } else {
            Err(format!("{id} again: answered {again:?}"))
        }
    }

    async fn hold(&mut self) -> Result<(), String> {
        let (customer, _) = self.customer();
        let customer = customer.as_str();
        let asset = self.asset();
        let amount = 1 + self.rng.below(3_000) as i64;
        let request = pb::CreateCreditHoldRequest {
            request_id: format!("hold-{}-{}-{}", self.seed, self.index, self.done),
            customer: customer.into(),
            amount: money(&asset, amount),
            // Longer than any run: holds end by release here.
            timeout_seconds: 86_400,
            unbilled: None,
        };
        let answer = call!(self, create_credit_hold, request);
        let id = match &answer {
            Ok(answer) => answer
                .credit_hold
                .as_ref()
                .map(|h| h.id.clone())
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        let expected = self.model.hold(&id, customer, &asset, amount, now());
        match (&expected, answer) {
            (Outcome::Ok(()), Ok(_)) => Ok(()),
            (_, Err(status)) => refusal(&expected, &status),
            (expected, answer) => Err(format!("the model expected {expected:?}, got {answer:?}")),
        }
    }

    async fn release(&mut self) -> Result<(), String> {
        if self.model.holds.is_empty() {
            return Ok(());
        }
        let id = self.model.holds[self.rng.below(self.model.holds.len())]
            .id
            .clone();
        let answer = call!(
            self,
            release_credit_hold,
            pb::ReleaseCreditHoldRequest { id: id.clone() }
        );
        let expected = self.model.release(&id, now());
        match (&expected, answer) {
            (Outcome::Ok(()), Ok(answer)) => {
                let status = answer.credit_hold.map(|h| h.status());
                if status == Some(pb::CreditHoldStatus::Released) {
                    Ok(())
                } else {
                    Err(format!("{id}: released as {status:?}"))
                }
            }
            (_, Err(status)) => refusal(&expected, &status),
            (expected, answer) => Err(format!("the model expected {expected:?}, got {answer:?}")),
        }
    }

    /// A configured alert: one customer's or every customer's, at one of
    /// the account's thresholds not used yet for that asset and scope.
    async fn alert(&mut self) -> Result<(), String> {
        let customer = if self.rng.chance(30) {
            None
        } else {
            Some(self.customer().0)
        };
        let asset = self.asset();
        let threshold = THRESHOLDS[self.rng.below(THRESHOLDS.len())];
        if self
            .model
            .alerts
            .iter()
            .any(|a| a.asset == asset && a.threshold == threshold)
        {
            return Ok(());
        }
        let request = pb::CreateBalanceAlertRequest {
            request_id: format!("alert-{}-{}-{}", self.seed, self.index, self.done),
            customer: customer.clone().unwrap_or_default(),
            threshold: money(&asset, threshold),
            title: format!("below {threshold}"),
        };
        let answer = call!(self, create_balance_alert, request)
            .map_err(|s| format!("alert refused: {s:?}"))?;
        let id = answer
            .balance_alert
            .map(|a| a.id)
            .ok_or("no alert in the answer")?;
        self.model.alerts.push(model::Alert {
            id,
            customer,
            asset,
            threshold,
        });
        Ok(())
    }

    /// The account's alert events in the ledger's feed, oldest first,
    /// against the model's.
    pub(super) async fn check_events(&mut self) -> Result<(), String> {
        let mut got = Vec::new();
        let mut page_token = String::new();
        loop {
            let message = events::ListEventsRequest {
                types: vec![
                    model::DROPPED.into(),
                    model::DEPLETED.into(),
                    model::RECOVERED.into(),
                ],
                page_size: 100,
                page_token: page_token.clone(),
                ..Default::default()
            };
            // The kills go on while the run's last checks read the feed: a
            // page cut by one is asked for again.
            let started = Instant::now();
            let page = loop {
                let mut request = tonic::Request::new(message.clone());
                if let Ok(value) = format!("Bearer {}", self.key).parse() {
                    request.metadata_mut().insert("authorization", value);
                }
                match self.feed.list_events(request).await {
                    Ok(answer) => break answer.into_inner(),
                    Err(status) if cut(&status) && started.elapsed() < Duration::from_secs(120) => {
                        self.retries += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(status) => return Err(format!("ListEvents refused: {status:?}")),
                }
            };
            for event in page.events {
                let Some(events::event::Data::CreditBalanceAlert(data)) = event.data else {
                    return Err(format!("{} without its alert data", event.id));
                };
                let (asset, balance) = value(&data.available_balance);
                let kind = [model::DROPPED, model::DEPLETED, model::RECOVERED]
                    .into_iter()
                    .find(|k| *k == event.r#type)
                    .unwrap_or("unknown");
                got.push(model::AlertEvent {
                    kind,
                    customer: data.customer,
                    asset,
                    alert: data.balance_alert.map(|a| a.id),
                    balance,
                });
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        got.reverse();
        // Per customer and asset the order is the order of the changes.
        let by_balance = |events: &[model::AlertEvent]| {
            let mut map: BTreeMap<(String, String), Vec<model::AlertEvent>> = BTreeMap::new();
            for e in events {
                map.entry((e.customer.clone(), e.asset.clone()))
                    .or_default()
                    .push(e.clone());
            }
            map
        };
        let (got, want) = (by_balance(&got), by_balance(&self.model.events));
        for key in want.keys().chain(got.keys()) {
            let (g, w) = (got.get(key), want.get(key));
            if g != w {
                let first = g
                    .into_iter()
                    .flatten()
                    .zip(w.into_iter().flatten())
                    .position(|(a, b)| a != b);
                return Err(format!(
                    "alert events of {key:?} differ (first at {first:?}): the service {} events, the model {}; service {:?} model {:?}",
                    g.map_or(0, Vec::len),
                    w.map_or(0, Vec::len),
                    g.map(|v| v.iter().rev().take(4).collect::<Vec<_>>()),
                    w.map(|v| v.iter().rev().take(4).collect::<Vec<_>>()),
                ));
            }
        }
        Ok(())
    }

    /// The customer's available balance per asset and each grant's
    /// available amount, against the model.
    /// The customer's balances against the model; `full`: every grant's
    /// available amount too (else a few, at random).
    pub(super) async fn check(&mut self, customer: &str, full: bool) -> Result<(), String> {
        let summary = call!(
            self,
            get_credit_balance_summary,
            pb::GetCreditBalanceSummaryRequest {
                customer: customer.into(),
                ..Default::default()
            }
        )
        .map_err(|s| format!("summary refused: {s:?}"))?;
        let now = billing_server::clock::Clock::system().now().timestamp();
        let mut want = self.model.available(customer, now);
        want.retain(|_, v| *v != 0);
        let mut got: BTreeMap<String, i64> = summary
            .balances
            .iter()
            .map(|b| value(&b.available_balance))
            .collect();
        got.retain(|_, v| *v != 0);
        if got != want {
            return Err(format!("{customer}: available {got:?}, the model {want:?}"));
        }
        for balance in &summary.balances {
            let (asset, held) = value(&balance.held_balance);
            let (_, pending) = value(&balance.pending_balance);
            let want_held = self.model.held(customer, &asset);
            let want_pending: i64 = self
                .model
                .grants
                .iter()
                .filter(|g| g.customer == customer && g.asset == asset && g.pending && !g.voided)
                .map(|g| g.available)
                .sum();
            if (held, pending) != (want_held, want_pending) {
                return Err(format!(
                    "{customer} {asset}: held {held} pending {pending}, the model {want_held} {want_pending}"
                ));
            }
        }
        if !full {
            // A few grants at random: a check costs the same however long
            // the run.
            let mine: Vec<String> = self
                .model
                .grants
                .iter()
                .filter(|g| g.customer == customer)
                .map(|g| g.id.clone())
                .collect();
            for _ in 0..mine.len().min(3) {
                let id = mine[self.rng.below(mine.len())].clone();
                let grant = call!(
                    self,
                    get_credit_grant,
                    pb::GetCreditGrantRequest { id: id.clone() }
                )
                .map_err(|s| format!("{id} refused: {s:?}"))?
                .credit_grant
                .ok_or("no grant")?;
                let got = value(&grant.available).1;
                let want = self.model.grant(&id).map(|g| g.available);
                if want != Some(got) {
                    return Err(format!("{id}: available {got}, the model {want:?}"));
                }
            }
            return Ok(());
        }
        let mut page_token = String::new();
        let mut seen = 0;
        loop {
            let request = pb::ListCreditGrantsRequest {
                customer: customer.into(),
                page_size: 100,
                page_token: page_token.clone(),
            };
            let page = call!(self, list_credit_grants, request)
                .map_err(|s| format!("list refused: {s:?}"))?;
            for grant in &page.credit_grants {
                seen += 1;
                let got = value(&grant.available).1;
                let want = self.model.grant(&grant.id).map(|g| g.available);
                if want != Some(got) {
                    return Err(format!("{}: available {got}, the model {want:?}", grant.id));
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let modelled = self
            .model
            .grants
            .iter()
            .filter(|g| g.customer == customer)
            .count();
        if seen != modelled {
            return Err(format!(
                "{customer}: {seen} grants listed, the model has {modelled}"
            ));
        }
        Ok(())
    }
}
