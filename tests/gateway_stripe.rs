//! The gateway conformance kit and the adapter's own checks against `StripeGateway`, pointed at a
//! local fake of Stripe's API (`tests/stripe_fake`).
#![cfg(feature = "stripe")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway_conformance;
mod stripe_fake;

use std::time::{Duration, Instant};

use boxoffice::domain::{PaymentId, RefundId};
use boxoffice::system::{ChargeStatus, GatewayOutcome, PaymentGateway, StripeConfig, StripeGateway};
use gateway_conformance::{GatewayFaults, Harness, Subject, eur};
use secrecy::SecretString;
use stripe_fake::{SECRET_KEY, StripeFake};

const VISA: &str = "pm_card_visa";
const DECLINED: &str = "pm_card_chargeDeclined";
const NEEDS_AUTHENTICATION: &str = "pm_card_authenticationRequired";

impl GatewayFaults for StripeFake {
    fn lose_next_answer(&self) {
        self.fail_next_after_acting();
    }

    fn charges_taken(&self, payment_id: PaymentId) -> Option<usize> {
        Some(self.intents_for(&payment_id.to_string()).iter().filter(|i| i.status == "succeeded").count())
    }
}

/// A fake Stripe and a gateway pointed at it.
struct Stripe {
    fake: StripeFake,
    gateway: StripeGateway,
    approving: SecretString,
    declining: SecretString,
}

impl Harness for Stripe {
    fn subject(&self) -> Subject<'_> {
        Subject { gateway: &self.gateway, approving: &self.approving, declining: &self.declining, faults: &self.fake }
    }
}

fn gateway_for(fake: &StripeFake, key: &str, timeout: Duration) -> StripeGateway {
    let mut config = StripeConfig::new(SecretString::from(key));
    fake.base_url().clone_into(&mut config.api_base);
    config.timeout = timeout;
    StripeGateway::new(config).unwrap()
}

async fn stripe() -> Stripe {
    let fake = StripeFake::start().await;
    let gateway = gateway_for(&fake, SECRET_KEY, Duration::from_secs(5));
    Stripe { fake, gateway, approving: SecretString::from(VISA), declining: SecretString::from(DECLINED) }
}

gateway_conformance::gateway_conformance_suite!(stripe);

fn reason_of(outcome: &GatewayOutcome) -> Option<&str> {
    match outcome {
        GatewayOutcome::Approved => None,
        GatewayOutcome::Declined { reason } | GatewayOutcome::Unknown { reason } => Some(reason),
    }
}

#[tokio::test]
async fn requires_action_is_declined_and_the_intent_cancelled() {
    let s = stripe().await;
    let payment = PaymentId::new_v4();
    let outcome = s.gateway.charge(payment, eur(1_000), &SecretString::from(NEEDS_AUTHENTICATION)).await;
    assert_eq!(outcome, GatewayOutcome::Declined { reason: "requires customer authentication".into() });
    let intents = s.fake.intents_for(&payment.to_string());
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].status, "canceled", "the intent was cancelled so no money can move later");
    assert!(
        s.fake
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path == format!("/v1/payment_intents/{}/cancel", intents[0].id)),
        "the gateway called cancel"
    );
    assert!(matches!(s.gateway.status(payment).await, ChargeStatus::Declined { .. }));
    let refund = s.gateway.refund(payment, RefundId::new_v4(), eur(1_000)).await;
    assert!(matches!(refund, GatewayOutcome::Declined { .. }), "nothing to refund, got {refund:?}");
}

#[tokio::test]
async fn a_timeout_answers_unknown_then_status_resolves_it() {
    let fake = StripeFake::start().await;
    let gateway = gateway_for(&fake, SECRET_KEY, Duration::from_millis(300));
    let payment = PaymentId::new_v4();
    fake.hang_next(Duration::from_secs(3));
    let started = Instant::now();
    let outcome = gateway.charge(payment, eur(1_000), &SecretString::from(VISA)).await;
    assert!(matches!(outcome, GatewayOutcome::Unknown { .. }), "a timeout is Unknown, got {outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "the call is bounded by the timeout: {:?}", started.elapsed());
    assert_eq!(gateway.status(payment).await, ChargeStatus::Approved, "the charge landed after all");
}

#[tokio::test]
async fn a_lost_refund_answer_is_unknown_and_resending_it_refunds_once() {
    let s = stripe().await;
    let payment = gateway_conformance::approved_charge(s.subject(), eur(1_000)).await;
    let refund = RefundId::new_v4();
    s.fake.fail_next_after_acting();
    let lost = s.gateway.refund(payment, refund, eur(700)).await;
    assert!(matches!(lost, GatewayOutcome::Unknown { .. }), "a 500 after acting is Unknown, got {lost:?}");
    assert_eq!(s.gateway.refund(payment, refund, eur(700)).await, GatewayOutcome::Approved, "the resent refund");
    assert_eq!(s.fake.intents_for(&payment.to_string())[0].refunded, 700, "given back once");
}

#[tokio::test]
async fn idempotency_keys_are_the_payment_and_refund_ids() {
    let s = stripe().await;
    let payment = gateway_conformance::approved_charge(s.subject(), eur(1_234)).await;
    let refund = RefundId::new_v4();
    assert_eq!(s.gateway.refund(payment, refund, eur(234)).await, GatewayOutcome::Approved);
    let requests = s.fake.requests();
    let charge = requests.iter().find(|r| r.method == "POST" && r.path == "/v1/payment_intents").unwrap();
    assert_eq!(charge.header("idempotency-key"), Some(format!("boxoffice-charge-{payment}").as_str()));
    assert_eq!(charge.param("amount"), Some("1234"));
    assert_eq!(charge.param("currency"), Some("eur"));
    assert_eq!(charge.param("confirm"), Some("true"));
    assert_eq!(charge.param("metadata[boxoffice_payment_id]"), Some(payment.to_string().as_str()));
    assert_eq!(charge.header("content-type"), Some("application/x-www-form-urlencoded"));
    let sent = requests.iter().find(|r| r.path == "/v1/refunds").unwrap();
    assert_eq!(sent.header("idempotency-key"), Some(format!("boxoffice-refund-{refund}").as_str()));
    assert_eq!(sent.param("amount"), Some("234"));
    assert_eq!(sent.param("metadata[boxoffice_refund_id]"), Some(refund.to_string().as_str()));
}

#[tokio::test]
async fn a_reused_key_with_other_parameters_is_unknown_until_status_tells() {
    let s = stripe().await;
    let payment = gateway_conformance::approved_charge(s.subject(), eur(1_000)).await;
    let other = s.gateway.charge(payment, eur(2_000), &SecretString::from(VISA)).await;
    assert!(matches!(other, GatewayOutcome::Unknown { .. }), "idempotency_error is Unknown, got {other:?}");
    assert_eq!(s.gateway.status(payment).await, ChargeStatus::Approved);
    assert_eq!(s.fake.intents_for(&payment.to_string()).len(), 1, "no second intent");
}

#[tokio::test]
async fn the_token_goes_only_to_the_charge_and_the_key_only_to_the_authorization_header() {
    let s = stripe().await;
    let subject = s.subject();
    let payment = gateway_conformance::approved_charge(subject, eur(1_000)).await;
    s.gateway.status(payment).await;
    s.gateway.refund(payment, RefundId::new_v4(), eur(100)).await;
    let declined = PaymentId::new_v4();
    s.gateway.charge(declined, eur(1_000), &SecretString::from(DECLINED)).await;
    s.gateway.refund(declined, RefundId::new_v4(), eur(100)).await;
    s.gateway.charge(PaymentId::new_v4(), eur(1_000), &SecretString::from(NEEDS_AUTHENTICATION)).await;
    let requests = s.fake.requests();
    assert!(requests.iter().any(|r| r.path.ends_with("/cancel")) && requests.iter().any(|r| r.path == "/v1/refunds"));
    for request in &requests {
        let everywhere = format!("{} {} {:?}", request.query, request.body, request.headers);
        for token in [VISA, DECLINED, NEEDS_AUTHENTICATION] {
            if everywhere.contains(token) {
                assert!(
                    request.method == "POST" && request.path == "/v1/payment_intents",
                    "the token was sent to {} {}",
                    request.method,
                    request.path
                );
                assert_eq!(request.param("payment_method"), Some(token), "only as the payment method");
            }
        }
        assert_eq!(request.header("authorization"), Some(format!("Bearer {SECRET_KEY}").as_str()));
        let elsewhere = format!("{} {} {}", request.path, request.query, request.body);
        assert!(!elsewhere.contains(SECRET_KEY), "the key only travels in the Authorization header");
    }
}

#[tokio::test]
async fn no_reason_and_no_debug_output_shows_the_key_or_the_token() {
    let s = stripe().await;
    let wrong_key = "sk_test_wrong_0123456789abcdef";
    let unauthorized = gateway_for(&s.fake, wrong_key, Duration::from_secs(5));
    let unknown_token = "pm_secret_customer_card_77";
    let payment = PaymentId::new_v4();
    let mut outcomes = vec![
        unauthorized.charge(payment, eur(1_000), &SecretString::from(VISA)).await,
        unauthorized.refund(payment, RefundId::new_v4(), eur(1_000)).await,
        s.gateway.charge(PaymentId::new_v4(), eur(1_000), &SecretString::from(unknown_token)).await,
        s.gateway.charge(PaymentId::new_v4(), eur(1_000), &SecretString::from(DECLINED)).await,
        s.gateway.charge(PaymentId::new_v4(), eur(1_000), &SecretString::from(NEEDS_AUTHENTICATION)).await,
    ];
    s.fake.fail_next_after_acting();
    outcomes.push(s.gateway.charge(PaymentId::new_v4(), eur(1_000), &SecretString::from(VISA)).await);
    let charged = gateway_conformance::approved_charge(s.subject(), eur(1_000)).await;
    outcomes.push(s.gateway.refund(charged, RefundId::new_v4(), eur(5_000)).await);
    outcomes.push(s.gateway.charge(charged, eur(9), &SecretString::from(VISA)).await);

    assert!(matches!(&outcomes[0], GatewayOutcome::Unknown { reason } if reason.contains("401")), "{:?}", outcomes[0]);
    assert!(
        matches!(&outcomes[2], GatewayOutcome::Declined { reason } if reason == "resource_missing"),
        "{:?}",
        outcomes[2]
    );
    assert_eq!(outcomes[3], GatewayOutcome::Declined { reason: "card_declined (generic_decline)".into() });
    let mut reasons: Vec<String> = outcomes.iter().filter_map(reason_of).map(str::to_owned).collect();
    assert_eq!(reasons.len(), outcomes.len(), "every one of these calls answers with a reason");
    if let ChargeStatus::Unknown { reason } = unauthorized.status(payment).await {
        reasons.push(reason);
    } else {
        panic!("a status asked with a wrong key is Unknown");
    }
    for reason in &reasons {
        for secret in [SECRET_KEY, wrong_key, unknown_token, VISA, DECLINED, NEEDS_AUTHENTICATION, "sk_test"] {
            assert!(!reason.contains(secret), "reason {reason:?} shows a secret");
        }
    }
    let debug = format!("{:?} {:?} {:?}", s.gateway, unauthorized, StripeConfig::new(SecretString::from(SECRET_KEY)));
    assert!(!debug.contains(SECRET_KEY) && !debug.contains(wrong_key), "{debug}");
}

#[tokio::test]
async fn an_unreachable_stripe_answers_unknown_within_the_timeout() {
    let fake = StripeFake::start().await;
    let gateway = gateway_for(&fake, SECRET_KEY, Duration::from_secs(2));
    drop(fake);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let payment = PaymentId::new_v4();
    let started = Instant::now();
    let outcome = gateway.charge(payment, eur(1_000), &SecretString::from(VISA)).await;
    assert!(matches!(outcome, GatewayOutcome::Unknown { .. }), "{outcome:?}");
    assert!(matches!(gateway.status(payment).await, ChargeStatus::Unknown { .. }));
    assert!(matches!(gateway.refund(payment, RefundId::new_v4(), eur(1)).await, GatewayOutcome::Unknown { .. }));
    assert!(started.elapsed() < Duration::from_secs(7));
}

#[tokio::test]
async fn another_process_finds_the_charge_by_search_to_refund_it() {
    let s = stripe().await;
    let payment = gateway_conformance::approved_charge(s.subject(), eur(1_000)).await;
    let restarted = gateway_for(&s.fake, SECRET_KEY, Duration::from_secs(5));
    assert_eq!(restarted.refund(payment, RefundId::new_v4(), eur(1_000)).await, GatewayOutcome::Approved);
    assert!(
        s.fake.requests().iter().any(|r| r.path == "/v1/payment_intents/search"),
        "the restarted gateway found the intent by its metadata"
    );
    let never_charged = restarted.refund(PaymentId::new_v4(), RefundId::new_v4(), eur(1)).await;
    assert!(
        matches!(never_charged, GatewayOutcome::Unknown { .. }),
        "search lags, so a charge it cannot find yet is not declared refund-less: {never_charged:?}"
    );
}
