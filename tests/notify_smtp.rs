//! The SMTP sink against a real SMTP server on loopback: aiosmtpd writing what it receives to a
//! Maildir (`scripts/test-services.sh` starts it and sets `SMTP_SINK_PORT` and `SMTP_SINK_DIR`).
//! A purchase through `TicketingSystem` arrives once, to the buyer, with the notification's
//! subject and `Message-ID`. Without the variables the test fails: it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice::aggregates::reservation_stream;
use boxoffice::domain::TicketKeys;
use boxoffice::notify::{EmailAddress, NotificationId, NotificationKind, SmtpConfig, SmtpSink};
use boxoffice::prelude::*;
use boxoffice::system::{SimulatedGateway, TicketingSystem};

const DEADLINE: Duration = Duration::from_secs(30);

fn required(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!(
            "{variable} is not set: this test needs the SMTP sink that scripts/test-services.sh starts \
             (python3 -m aiosmtpd -n -l 127.0.0.1:$SMTP_SINK_PORT -c aiosmtpd.handlers.Mailbox $SMTP_SINK_DIR)"
        )
    })
}

/// Every message in the Maildir `dir` (new and cur), as text.
fn mails(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for entry in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                found.push((entry.path(), text));
            }
        }
    }
    found
}

/// The body of `mail`, decoded from quoted-printable (which the mail library picks for long lines).
fn body(mail: &str) -> String {
    let raw = mail.split_once("\n\n").map_or("", |(_, body)| body).replace("=\r\n", "").replace("=\n", "");
    let mut bytes = Vec::new();
    let mut rest = raw.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        let escaped = tail.get(..2).and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        if let (b'=', Some(byte)) = (first, escaped) {
            bytes.push(byte);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The value of header `name` in `mail` (unfolded), if any.
fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    let head = mail.split("\n\n").next().unwrap_or(mail);
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_is_mailed_once_with_its_message_id() {
    let port: u16 = required("SMTP_SINK_PORT").parse().expect("SMTP_SINK_PORT is a port number");
    let dir = PathBuf::from(required("SMTP_SINK_DIR"));
    std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("no SMTP sink listens on 127.0.0.1:{port}: {e}"));
    let config = SmtpConfig::from_lookup(|name| match name {
        "BOXOFFICE_SMTP_URL" => Some(format!("smtp://127.0.0.1:{port}")),
        "BOXOFFICE_SMTP_FROM" => Some("tickets@boxoffice.test".to_owned()),
        _ => None,
    })
    .unwrap();
    let sink = SmtpSink::new(&config).unwrap();

    let buyer = CustomerId::new_v4();
    let address = format!("buyer-{}@example.com", buyer.as_uuid().simple());
    let addresses = HashMap::from([(buyer, EmailAddress::new(address.clone()).unwrap())]);
    let system = TicketingSystem::builder()
        .payment_gateway(Arc::new(SimulatedGateway::always_succeed()))
        .notifier(Arc::new(sink), Arc::new(move |customer: CustomerId| addresses.get(&customer).cloned()))
        .ticket_keys(TicketKeys::from_secret([3; 32]))
        .build()
        .await
        .unwrap();
    let stalls = SectionName::new("Stalls").unwrap();
    let event = system
        .create_event(EventSpec {
            name: "Rust Live".into(),
            venue: Venue::new(VenueId::new_v4(), "Hall 1").unwrap(),
            date: chrono::Utc::now() + chrono::Duration::days(30),
            sections: vec![Section { name: stalls.clone(), capacity: Capacity::new(10).unwrap() }],
            pricing_tiers: vec![
                PricingTier::new(TierKind::Regular, stalls.clone(), Money::new(4_200, Currency::EUR), None).unwrap(),
            ],
            policy: SalesPolicy::default(),
        })
        .await
        .unwrap();
    system.publish_event(event).await.unwrap();
    system.open_sales(event).await.unwrap();
    let request =
        ReserveRequest { event_id: event, section: stalls, quantity: 2, customer_id: buyer, idempotency_key: None };
    let hold = system.reserve(request).await.unwrap();
    system.pay(hold.reservation_id, PaymentDetails { token: "tok_visa".into() }).await.unwrap();
    system.settled().await.unwrap();
    let tickets = system.tickets(hold.reservation_id).await.unwrap();

    let stream = reservation_stream(hold.reservation_id).unwrap();
    let completed = system
        .event_store()
        .load_stream(&stream, 1)
        .await
        .unwrap()
        .into_iter()
        .find(|e| &*e.event_type == "ReservationCompleted")
        .expect("the purchase completed");
    let id = NotificationId::derive(completed.event_id, NotificationKind::PurchaseConfirmed, buyer);
    let message_id = format!("<{id}@boxoffice.test>");
    let ours = |mails: Vec<(PathBuf, String)>| -> Vec<String> {
        mails
            .into_iter()
            .filter(|(_, m)| header(m, "Message-ID") == Some(message_id.as_str()))
            .map(|(_, m)| m)
            .collect()
    };

    let deadline = Instant::now() + DEADLINE;
    while ours(mails(&dir)).is_empty() {
        let health = system.health().await.unwrap();
        assert!(
            Instant::now() < deadline,
            "no mail with Message-ID {message_id} in {} after {DEADLINE:?}; notifier: {:?}",
            dir.display(),
            health.consumer("boxoffice-saga-notifier")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Everything the log holds is handled: nothing else is on its way.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let health = system.health().await.unwrap();
        if health.consumer("boxoffice-saga-notifier").is_some_and(|c| c.lag == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "the notifier did not catch up: {health:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    system.shutdown().await;

    let arrived = ours(mails(&dir));
    assert_eq!(arrived.len(), 1, "exactly one mail: {arrived:#?}");
    let mail = &arrived[0];
    assert_eq!(header(mail, "X-RcptTo"), Some(address.as_str()), "{mail}");
    assert_eq!(header(mail, "To"), Some(address.as_str()), "{mail}");
    assert_eq!(header(mail, "From"), Some("tickets@boxoffice.test"), "{mail}");
    assert_eq!(header(mail, "Subject"), Some("Your tickets for Rust Live"), "{mail}");
    let text = body(mail);
    assert!(text.contains("Rust Live at Hall 1"), "the body names the event: {text}");
    assert!(text.contains("2 seats in Stalls, 84.00 EUR paid"), "the body names the seats and amount: {text}");
    for seat in &hold.seats {
        assert!(text.contains(&seat.to_string()), "the body names seat {seat}: {text}");
    }
    let codes = tickets.iter().filter(|t| text.contains(&t.code)).count();
    assert_eq!((tickets.len(), codes), (2, 2), "the body carries both ticket codes: {text}");
    let by_this_buyer =
        mails(&dir).into_iter().filter(|(_, m)| header(m, "X-RcptTo") == Some(address.as_str())).count();
    assert_eq!(by_this_buyer, 1, "nothing else went to the buyer");
}

/// A server that is not there is an operational failure (retried), not a refusal.
#[tokio::test]
async fn a_server_that_is_down_is_unavailable_not_a_refusal() {
    use boxoffice::notify::{
        EventSummary, Notification, NotificationSink, NotifyError, Purchase, PurchaseConfirmation, Recipient,
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let from = EmailAddress::new("tickets@boxoffice.test").unwrap();
    let sink = SmtpSink::new(&SmtpConfig::new("127.0.0.1", port, from)).unwrap();
    let customer_id = CustomerId::new_v4();
    let id = NotificationId::derive(uuid::Uuid::new_v4(), NotificationKind::PurchaseConfirmed, customer_id);
    let notification = Notification::PurchaseConfirmed(PurchaseConfirmation {
        id,
        recipient: Recipient { customer_id, email: EmailAddress::new("ada@example.com").unwrap() },
        event: EventSummary {
            event_id: EventId::new_v4(),
            name: "Rust Live".into(),
            venue: "Hall 1".into(),
            date: chrono::Utc::now(),
        },
        purchase: Purchase {
            reservation_id: ReservationId::new_v4(),
            section: SectionName::new("Stalls").unwrap(),
            seats: vec![],
            amount: Money::new(100, Currency::EUR),
        },
        tickets: Vec::new(),
    });
    let error = sink.deliver(&notification).await.unwrap_err();
    assert!(matches!(error, NotifyError::Unavailable { notification_id, .. } if notification_id == id), "{error:?}");
    assert!(!error.is_refusal());
}
