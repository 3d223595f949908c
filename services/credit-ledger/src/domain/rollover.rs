//! Rollover (DESIGN.md section 11): what an allocation's grants left at the
//! end of a period is expired, and that remainder, capped, is granted again
//! for the next period — both in one transaction, so the customer's balance
//! never holds the old and the new credits at once, nor neither.

use chrono::{DateTime, Utc};

use super::error::RuleError;
use super::grant::{Grant, add};
use super::transaction::{BalanceTransaction, NewId};

/// What a rollover does to the old grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollover {
    /// The `credits_expired` debits of the old grants' remainders.
    pub expiries: Vec<BalanceTransaction>,
    /// What the new grant receives: the remainders' sum, at most the cap.
    pub carried: i64,
}

/// Expires what is left of `grants` now (they must be one customer's, in
/// one asset, which the caller checked) and returns the debits and the
/// amount to carry: `min(Σ remainder, cap)`. Voided grants have nothing left.
/// A grant whose expiry is later than now now expires now.
pub fn expire_remainders(
    grants: &mut [Grant],
    cap: i64,
    now: DateTime<Utc>,
    new_id: NewId<'_>,
) -> Result<Rollover, RuleError> {
    let mut left: i64 = 0;
    let mut expiries = Vec::new();
    for grant in grants.iter_mut().filter(|g| g.voided_at.is_none()) {
        left = add(left, grant.available, "rollover remainder")?;
        if grant.expires_at.is_none_or(|at| at > now) {
            grant.expires_at = Some(now);
            grant.updated = now;
        }
        if grant.available > 0 {
            grant.updated = now;
        }
        expiries.extend(grant.record_expiry(now, now, new_id)?);
    }
    Ok(Rollover {
        expiries,
        carried: left.min(cap),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::grant::{Category, GrantTotals, Scope};
    use billing_money::Asset;
    use chrono::TimeZone;

    fn grant(id: &str, amount: i64, available: i64) -> Grant {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap();
        Grant {
            id: id.into(),
            customer: "cus_1".into(),
            name: String::new(),
            asset: Asset::Currency(billing_money::Currency::parse("usd").unwrap()),
            amount,
            available,
            totals: GrantTotals {
                applied: amount - available,
                ..GrantTotals::default()
            },
            scope: Scope::Metered,
            category: Category::Promotional,
            priority: 50,
            effective_at: at,
            expires_at: None,
            voided_at: None,
            metadata: Default::default(),
            created: at,
            updated: at,
            source: None,
            cost_basis: None,
            pending_payment: false,
            shared: false,
        }
    }

    fn ids() -> impl FnMut() -> String + Send {
        let mut n = 0;
        move || {
            n += 1;
            format!("cbtxn_{n}")
        }
    }

    #[test]
    fn the_remainder_is_expired_and_carried_up_to_the_cap() {
        let now = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).single().unwrap();
        let mut grants = vec![grant("a", 1_000, 400), grant("b", 200, 50)];
        let rollover = expire_remainders(&mut grants, 300, now, &mut ids()).unwrap();
        assert_eq!(rollover.carried, 300);
        let expired: Vec<i64> = rollover.expiries.iter().map(|t| t.amount).collect();
        assert_eq!(expired, vec![400, 50]);
        assert!(grants.iter().all(|g| g.available == 0));
        assert!(grants.iter().all(|g| g.expires_at == Some(now)));
        assert_eq!(grants[0].totals.expired, 400);
    }

    #[test]
    fn less_than_the_cap_carries_all_of_it_and_nothing_carries_nothing() {
        let now = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).single().unwrap();
        let mut grants = vec![grant("a", 1_000, 120)];
        let rollover = expire_remainders(&mut grants, 300, now, &mut ids()).unwrap();
        assert_eq!(rollover.carried, 120);
        let mut empty = vec![grant("a", 1_000, 0)];
        let rollover = expire_remainders(&mut empty, 300, now, &mut ids()).unwrap();
        assert_eq!(rollover.carried, 0);
        assert!(rollover.expiries.is_empty());
    }

    #[test]
    fn an_earlier_expiry_is_kept() {
        let now = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).single().unwrap();
        let end = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).single().unwrap();
        let mut grants = vec![grant("a", 1_000, 10)];
        grants[0].expires_at = Some(end);
        expire_remainders(&mut grants, 300, now, &mut ids()).unwrap();
        assert_eq!(grants[0].expires_at, Some(end));
    }
}
