//! Charges and refunds whose gateway answer is not recorded yet, derived from the log like the
//! open holds: the follower feeds every payment event it reads, and saves the open ones beside
//! its checkpoint, so a restarted process knows every charge a crash left undecided. The
//! reconciler works from here.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregates::{PaymentAction, ReservationAction, TicketingAction};
use crate::domain::{Money, PaymentId, RefundId, ReservationId};

/// How far a charge got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ChargeStage {
    /// Payment requested; no intent recorded yet.
    Requested,
    /// Intent recorded; the call is (or was) under way.
    Processing,
    /// The call answered that it does not know.
    Unknown,
}

/// A charge without a recorded answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpenCharge {
    pub(crate) payment_id: PaymentId,
    pub(crate) reservation_id: ReservationId,
    pub(crate) amount: Money,
    pub(crate) stage: ChargeStage,
    /// When it reached its stage (the clock of the process that recorded it).
    pub(crate) since: DateTime<Utc>,
    /// The request the purchase belongs to.
    pub(crate) correlation_id: Uuid,
    /// The event that opened it (its `PaymentRequested`).
    pub(crate) cause: Uuid,
}

/// A refund without a confirmed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpenRefund {
    pub(crate) payment_id: PaymentId,
    pub(crate) refund_id: RefundId,
    pub(crate) amount: Money,
    pub(crate) since: DateTime<Utc>,
    pub(crate) correlation_id: Uuid,
    /// Its `RefundRequested`.
    pub(crate) cause: Uuid,
}

/// Everything open, as saved beside the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpenSet {
    pub(crate) charges: Vec<OpenCharge>,
    pub(crate) refunds: Vec<OpenRefund>,
}

#[derive(Default)]
struct Open {
    charges: HashMap<PaymentId, OpenCharge>,
    refunds: HashMap<RefundId, OpenRefund>,
    /// Calls this process has under way: the reconciler leaves them alone.
    calling: HashSet<Uuid>,
}

/// The open charges and refunds, shared by the follower, the saga and the reconciler.
#[derive(Clone, Default)]
pub(crate) struct OpenPayments {
    open: Arc<Mutex<Open>>,
}

/// Marks a gateway call under way in this process until dropped.
pub(crate) struct Calling {
    open: Arc<Mutex<Open>>,
    key: Uuid,
}

impl Drop for Calling {
    fn drop(&mut self) {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).calling.remove(&self.key);
    }
}

impl OpenPayments {
    fn open(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tracks a payment event read from the log (stored as `event_id` under `correlation_id`).
    pub(crate) fn observe(&self, action: &TicketingAction, event_id: Uuid, correlation_id: Uuid) {
        let mut open = self.open();
        match action {
            TicketingAction::Reservation(ReservationAction::PaymentRequested {
                reservation_id,
                payment_id,
                amount,
                requested_at,
            }) => {
                open.charges.entry(*payment_id).or_insert(OpenCharge {
                    payment_id: *payment_id,
                    reservation_id: *reservation_id,
                    amount: *amount,
                    stage: ChargeStage::Requested,
                    since: *requested_at,
                    correlation_id,
                    cause: event_id,
                });
            }
            TicketingAction::Payment(payment) => match payment {
                PaymentAction::PaymentProcessed { payment_id, reservation_id, amount, processed_at } => {
                    let charge = open.charges.entry(*payment_id).or_insert(OpenCharge {
                        payment_id: *payment_id,
                        reservation_id: *reservation_id,
                        amount: *amount,
                        stage: ChargeStage::Processing,
                        since: *processed_at,
                        correlation_id,
                        cause: event_id,
                    });
                    charge.stage = ChargeStage::Processing;
                    charge.since = *processed_at;
                }
                PaymentAction::PaymentOutcomeUnknown { payment_id, recorded_at, .. } => {
                    if let Some(charge) = open.charges.get_mut(payment_id) {
                        charge.stage = ChargeStage::Unknown;
                        charge.since = *recorded_at;
                    }
                }
                PaymentAction::PaymentSucceeded { payment_id, .. }
                | PaymentAction::PaymentFailed { payment_id, .. } => {
                    open.charges.remove(payment_id);
                }
                PaymentAction::RefundRequested { payment_id, refund_id, amount, requested_at, .. } => {
                    open.refunds.insert(
                        *refund_id,
                        OpenRefund {
                            payment_id: *payment_id,
                            refund_id: *refund_id,
                            amount: *amount,
                            since: *requested_at,
                            correlation_id,
                            cause: event_id,
                        },
                    );
                }
                PaymentAction::PaymentRefunded { refund_id, .. } | PaymentAction::RefundDeclined { refund_id, .. } => {
                    open.refunds.remove(refund_id);
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// How many charges and refunds are open.
    pub(crate) fn len(&self) -> usize {
        let open = self.open();
        open.charges.len() + open.refunds.len()
    }

    /// Everything open, to save.
    pub(crate) fn snapshot(&self) -> OpenSet {
        let open = self.open();
        OpenSet { charges: open.charges.values().copied().collect(), refunds: open.refunds.values().copied().collect() }
    }

    /// Restores what was saved.
    pub(crate) fn restore(&self, saved: OpenSet) {
        let mut open = self.open();
        open.charges.extend(saved.charges.into_iter().map(|c| (c.payment_id, c)));
        open.refunds.extend(saved.refunds.into_iter().map(|r| (r.refund_id, r)));
    }

    /// Marks the call for `payment` (a charge) or a refund under way in this process.
    pub(crate) fn calling(&self, key: Uuid) -> Calling {
        self.open().calling.insert(key);
        Calling { open: Arc::clone(&self.open), key }
    }

    /// Charges and refunds that reached their stage at or before `cutoff` and have no call
    /// under way in this process: what the reconciler asks about.
    pub(crate) fn due(&self, cutoff: DateTime<Utc>) -> OpenSet {
        let open = self.open();
        let charges = open
            .charges
            .values()
            .filter(|c| c.since <= cutoff && !open.calling.contains(&c.payment_id.as_uuid()))
            .copied()
            .collect();
        let refunds = open
            .refunds
            .values()
            .filter(|r| r.since <= cutoff && !open.calling.contains(&r.refund_id.as_uuid()))
            .copied()
            .collect();
        OpenSet { charges, refunds }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::Currency;
    use chrono::TimeZone;

    #[test]
    fn a_charge_is_open_from_its_request_to_its_answer_and_skipped_while_called() {
        let at = Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap();
        let reservation_id = ReservationId::new_v4();
        let payment_id = PaymentId::for_reservation(reservation_id);
        let amount = Money::new(100, Currency::EUR);
        let open = OpenPayments::default();
        let requested = ReservationAction::PaymentRequested { reservation_id, payment_id, amount, requested_at: at };
        open.observe(&TicketingAction::Reservation(requested), Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(open.due(at).charges.len(), 1);
        assert!(open.due(at - chrono::Duration::seconds(1)).charges.is_empty(), "not yet past its grace");
        let calling = open.calling(payment_id.as_uuid());
        assert!(open.due(at).charges.is_empty(), "a call under way here is left alone");
        drop(calling);
        let saved = open.snapshot();
        let restored = OpenPayments::default();
        restored.restore(saved);
        assert_eq!(restored.due(at).charges[0].stage, ChargeStage::Requested);
        let failed = PaymentAction::PaymentFailed { payment_id, reservation_id, reason: "x".into(), failed_at: at };
        restored.observe(&TicketingAction::Payment(failed), Uuid::new_v4(), Uuid::new_v4());
        assert!(restored.due(at).charges.is_empty());
    }
}
