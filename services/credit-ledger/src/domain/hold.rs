//! Credit holds (DESIGN.md §12): credits reserved for a use about to
//! happen, so concurrent access checks can never hand out the same last
//! credit. A hold's status is derived from the clock: past its timeout it
//! counts for nothing, whether or not anything ever looked at it.

use billing_money::Asset;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{ConflictReason, RuleError};
use super::grant::subtract;

/// The longest timeout, in seconds (24 hours).
pub const TIMEOUT_SECONDS_MAX: u32 = 86_400;

/// A hold as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// `hold_…`
    pub id: String,
    /// The customer.
    pub customer: String,
    /// The asset held.
    pub asset: Asset,
    /// Smallest units held; positive.
    pub amount: i64,
    /// The request_id it was created with.
    pub request_id: String,
    /// When it stops counting unless released before.
    pub expires_at: DateTime<Utc>,
    /// When it was released.
    pub released_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created: DateTime<Utc>,
}

/// Where a hold stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    /// Counts against the balance.
    Active,
    /// Released before its timeout.
    Released,
    /// Its timeout passed.
    Expired,
}

impl Hold {
    /// The status at `now` (a hold is only ever released while active).
    pub fn status_at(&self, now: DateTime<Utc>) -> HoldStatus {
        if self.released_at.is_some() {
            HoldStatus::Released
        } else if now >= self.expires_at {
            HoldStatus::Expired
        } else {
            HoldStatus::Active
        }
    }
}

/// What a new hold is checked against, all in the hold's asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Credits usable now.
    pub available: i64,
    /// Credits the customer's unbilled usage will consume (the caller's).
    pub unbilled: i64,
    /// Active holds.
    pub held: i64,
}

impl Room {
    /// `available − unbilled − held`: what a new hold may take (negative
    /// when usage and holds already pass the credits).
    pub fn free(&self) -> Result<i64, RuleError> {
        let after_usage = subtract(self.available, self.unbilled, "free credits")?;
        subtract(after_usage, self.held, "free credits")
    }

    /// Ok when a hold of `amount` fits; INSUFFICIENT_CREDITS otherwise.
    pub fn admit(&self, amount: i64) -> Result<(), RuleError> {
        let free = self.free()?;
        if free >= amount {
            return Ok(());
        }
        Err(RuleError::conflict(
            ConflictReason::InsufficientCredits,
            format!(
                "a hold of {amount} does not fit: available {} − unbilled {} − held {} = {free} \
                 (smallest units); nothing was held",
                self.available, self.unbilled, self.held
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn a_hold_fits_exactly_and_not_one_unit_more() {
        let room = Room {
            available: 1_000,
            unbilled: 300,
            held: 200,
        };
        assert_eq!(room.admit(500), Ok(()));
        let refused = room.admit(501).unwrap_err();
        assert!(matches!(
            refused,
            RuleError::Conflict {
                reason: ConflictReason::InsufficientCredits,
                ..
            }
        ));
        // Usage past the credits leaves negative room, never a wrap.
        let over = Room {
            available: 0,
            unbilled: i64::MAX,
            held: 1,
        };
        assert_eq!(over.free(), Ok(i64::MIN));
        let overflow = Room {
            available: -2,
            unbilled: i64::MAX,
            held: 0,
        };
        assert!(matches!(overflow.free(), Err(RuleError::Overflow(_))));
    }

    #[test]
    fn status_follows_the_clock() {
        let t0 = DateTime::UNIX_EPOCH;
        let hold = Hold {
            id: "hold_1".into(),
            customer: "cus_1".into(),
            asset: Asset::from_key("usd", 2).unwrap(),
            amount: 1,
            request_id: "r".into(),
            expires_at: t0 + TimeDelta::seconds(60),
            released_at: None,
            created: t0,
        };
        assert_eq!(hold.status_at(t0), HoldStatus::Active);
        assert_eq!(
            hold.status_at(t0 + TimeDelta::seconds(60)),
            HoldStatus::Expired
        );
        let released = Hold {
            released_at: Some(t0 + TimeDelta::seconds(10)),
            ..hold
        };
        assert_eq!(
            released.status_at(t0 + TimeDelta::seconds(90)),
            HoldStatus::Released
        );
    }
}
