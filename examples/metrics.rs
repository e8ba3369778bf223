//! The engine's counters, exported for Prometheus. The library only records through the
//! `metrics` facade; the application picks the exporter. Here `metrics-exporter-prometheus`
//! renders the text format after one purchase and one refused request:
//!
//! ```text
//! cargo run --example metrics
//! ```

use std::sync::Arc;

use boxoffice::prelude::*;
use metrics_exporter_prometheus::PrometheusBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let system = TicketingSystem::builder()
        .payment_gateway(Arc::new(SimulatedGateway::always_succeed())) // a demo: moves no money
        .build()
        .await?;
    let hall = SectionName::new("Hall")?;
    let event = system
        .create_event(EventSpec {
            name: "Metrics Night".into(),
            venue: Venue::new(VenueId::new_v4(), "Hall")?,
            date: chrono::Utc::now() + chrono::Duration::days(7),
            sections: vec![Section { name: hall.clone(), capacity: Capacity::new(10)? }],
            pricing_tiers: vec![PricingTier::new(
                TierKind::Regular,
                hall.clone(),
                Money::new(2_000, Currency::EUR),
                None,
            )?],
            policy: SalesPolicy::default(),
        })
        .await?;
    system.publish_event(event).await?;
    system.open_sales(event).await?;
    let request = ReserveRequest {
        event_id: event,
        section: hall,
        quantity: 2,
        customer_id: CustomerId::new_v4(),
        idempotency_key: None,
    };
    let hold = system.reserve(request).await?;
    system.pay(hold.reservation_id, PaymentDetails { token: "tok_visa".into() }).await?;
    let refused = system.publish_event(event).await;
    println!("publishing twice: {}", refused.map_or_else(|e| e.to_string(), |()| "accepted?".into()));
    system.settled().await?;
    system.shutdown().await;
    for line in prometheus.render().lines().filter(|l| l.starts_with("boxoffice_") && !l.contains("quantile")) {
        println!("{line}");
    }
    Ok(())
}
