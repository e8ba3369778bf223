//! The query API of each read model as a trait, implemented by both storages, so callers can hold
//! a `&dyn AvailableSeatsQueries` without caring where the rows live.

use async_trait::async_trait;

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::domain::{Currency, CustomerId, EventId, GateName, MoneyTotal, SectionName};

use super::{
    AvailableSeatsProjection, CustomerHistoryProjection, CustomerProfile, CustomerTicketsProjection,
    DailySalesProjection, DaySales, GateCheckinsProjection, GateCounts, HeldTicket, Order, ProjectionError,
    ProjectionHandle, SalesAnalyticsProjection, SalesMetrics, SectionAvailability,
};

/// Queries of the `AvailableSeats` read model.
///
/// ```
/// use boxoffice::domain::EventId;
/// use boxoffice::projections::{AvailableSeatsProjection, AvailableSeatsQueries, ProjectionHandle};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let seats: &dyn AvailableSeatsQueries = &ProjectionHandle::new(AvailableSeatsProjection::new());
/// assert!(!seats.has_availability(EventId::new_v4(), "VIP", 1).await?);
/// # Ok::<(), boxoffice::projections::ProjectionError>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait AvailableSeatsQueries: Send + Sync {
    /// See [`AvailableSeatsProjection::get_availability`].
    async fn get_availability(
        &self,
        event: EventId,
        section: &str,
    ) -> Result<Option<SectionAvailability>, ProjectionError>;
    /// See [`AvailableSeatsProjection::has_availability`].
    async fn has_availability(&self, event: EventId, section: &str, quantity: u32) -> Result<bool, ProjectionError>;
    /// See [`AvailableSeatsProjection::get_total_available`].
    async fn get_total_available(&self, event: EventId) -> Result<u64, ProjectionError>;
}

/// Queries of the `SalesAnalytics` read model.
#[async_trait]
pub trait SalesAnalyticsQueries: Send + Sync {
    /// See [`SalesAnalyticsProjection::get_metrics`].
    async fn get_metrics(&self, event: EventId) -> Result<Option<SalesMetrics>, ProjectionError>;
    /// See [`SalesAnalyticsProjection::get_total_revenue_all_events`].
    async fn get_total_revenue_all_events(&self) -> Result<Vec<MoneyTotal>, ProjectionError>;
    /// See [`SalesAnalyticsProjection::get_most_popular_section`].
    async fn get_most_popular_section(&self, event: EventId) -> Result<Option<(SectionName, u64)>, ProjectionError>;
}

/// Queries of the `CustomerHistory` read model.
#[async_trait]
pub trait CustomerHistoryQueries: Send + Sync {
    /// See [`CustomerHistoryProjection::get_customer_profile`].
    async fn get_customer_profile(&self, customer: CustomerId) -> Result<Option<CustomerProfile>, ProjectionError>;
    /// See [`CustomerHistoryProjection::has_attended_event`].
    async fn has_attended_event(&self, customer: CustomerId, event: EventId) -> Result<bool, ProjectionError>;
    /// See [`CustomerHistoryProjection::get_event_attendees`].
    async fn get_event_attendees(&self, event: EventId) -> Result<Vec<CustomerId>, ProjectionError>;
    /// See [`CustomerHistoryProjection::get_top_spenders`].
    async fn get_top_spenders(
        &self,
        currency: Currency,
        n: usize,
    ) -> Result<Vec<(CustomerId, MoneyTotal)>, ProjectionError>;
}

/// Queries of the `CustomerTickets` read model.
///
/// ```
/// use boxoffice::domain::CustomerId;
/// use boxoffice::projections::{CustomerTicketsProjection, CustomerTicketsQueries, ProjectionHandle};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let tickets: &dyn CustomerTicketsQueries = &ProjectionHandle::new(CustomerTicketsProjection::new());
/// assert!(tickets.tickets_held(CustomerId::new_v4()).await?.is_empty());
/// # Ok::<(), boxoffice::projections::ProjectionError>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait CustomerTicketsQueries: Send + Sync {
    /// See [`CustomerTicketsProjection::get_orders`].
    async fn orders(&self, customer: CustomerId) -> Result<Vec<Order>, ProjectionError>;
    /// See [`CustomerTicketsProjection::get_tickets_held`].
    async fn tickets_held(&self, customer: CustomerId) -> Result<Vec<HeldTicket>, ProjectionError>;
    /// See [`CustomerTicketsProjection::get_valid_tickets_held`].
    async fn valid_tickets_held(&self, customer: CustomerId) -> Result<Vec<HeldTicket>, ProjectionError>;
}

/// Queries of the `GateCheckins` read model.
#[async_trait]
pub trait GateCheckinsQueries: Send + Sync {
    /// See [`GateCheckinsProjection::get_gates`].
    async fn gates(&self, event: EventId) -> Result<BTreeMap<GateName, GateCounts>, ProjectionError>;
    /// See [`GateCheckinsProjection::get_gate`].
    async fn gate(&self, event: EventId, gate: &GateName) -> Result<Option<GateCounts>, ProjectionError>;
    /// See [`GateCheckinsProjection::get_currently_inside`].
    async fn currently_inside(&self, event: EventId) -> Result<u64, ProjectionError>;
}

/// Queries of the `DailySales` read model.
#[async_trait]
pub trait DailySalesQueries: Send + Sync {
    /// See [`DailySalesProjection::get_daily_sales`].
    async fn daily_sales(&self, event: EventId) -> Result<Vec<DaySales>, ProjectionError>;
    /// See [`DailySalesProjection::get_day_sales`].
    async fn day_sales(&self, event: EventId, day: NaiveDate) -> Result<Option<DaySales>, ProjectionError>;
}

#[async_trait]
impl CustomerTicketsQueries for ProjectionHandle<CustomerTicketsProjection> {
    async fn orders(&self, customer: CustomerId) -> Result<Vec<Order>, ProjectionError> {
        Ok(self.read(|m| m.get_orders(customer)))
    }
    async fn tickets_held(&self, customer: CustomerId) -> Result<Vec<HeldTicket>, ProjectionError> {
        Ok(self.read(|m| m.get_tickets_held(customer)))
    }
    async fn valid_tickets_held(&self, customer: CustomerId) -> Result<Vec<HeldTicket>, ProjectionError> {
        Ok(self.read(|m| m.get_valid_tickets_held(customer)))
    }
}

#[async_trait]
impl GateCheckinsQueries for ProjectionHandle<GateCheckinsProjection> {
    async fn gates(&self, event: EventId) -> Result<BTreeMap<GateName, GateCounts>, ProjectionError> {
        Ok(self.read(|m| m.get_gates(event)))
    }
    async fn gate(&self, event: EventId, gate: &GateName) -> Result<Option<GateCounts>, ProjectionError> {
        Ok(self.read(|m| m.get_gate(event, gate)))
    }
    async fn currently_inside(&self, event: EventId) -> Result<u64, ProjectionError> {
        Ok(self.read(|m| m.get_currently_inside(event)))
    }
}

#[async_trait]
impl DailySalesQueries for ProjectionHandle<DailySalesProjection> {
    async fn daily_sales(&self, event: EventId) -> Result<Vec<DaySales>, ProjectionError> {
        Ok(self.read(|m| m.get_daily_sales(event)))
    }
    async fn day_sales(&self, event: EventId, day: NaiveDate) -> Result<Option<DaySales>, ProjectionError> {
        Ok(self.read(|m| m.get_day_sales(event, day)))
    }
}

#[async_trait]
impl AvailableSeatsQueries for ProjectionHandle<AvailableSeatsProjection> {
    async fn get_availability(
        &self,
        event: EventId,
        section: &str,
    ) -> Result<Option<SectionAvailability>, ProjectionError> {
        Ok(self.read(|m| m.get_availability(event, section)))
    }
    async fn has_availability(&self, event: EventId, section: &str, quantity: u32) -> Result<bool, ProjectionError> {
        Ok(self.read(|m| m.has_availability(event, section, quantity)))
    }
    async fn get_total_available(&self, event: EventId) -> Result<u64, ProjectionError> {
        Ok(self.read(|m| m.get_total_available(event)))
    }
}

#[async_trait]
impl SalesAnalyticsQueries for ProjectionHandle<SalesAnalyticsProjection> {
    async fn get_metrics(&self, event: EventId) -> Result<Option<SalesMetrics>, ProjectionError> {
        Ok(self.read(|m| m.get_metrics(event)))
    }
    async fn get_total_revenue_all_events(&self) -> Result<Vec<MoneyTotal>, ProjectionError> {
        Ok(self.read(SalesAnalyticsProjection::get_total_revenue_all_events))
    }
    async fn get_most_popular_section(&self, event: EventId) -> Result<Option<(SectionName, u64)>, ProjectionError> {
        Ok(self.read(|m| m.get_most_popular_section(event)))
    }
}

#[async_trait]
impl CustomerHistoryQueries for ProjectionHandle<CustomerHistoryProjection> {
    async fn get_customer_profile(&self, customer: CustomerId) -> Result<Option<CustomerProfile>, ProjectionError> {
        Ok(self.read(|m| m.get_customer_profile(customer)))
    }
    async fn has_attended_event(&self, customer: CustomerId, event: EventId) -> Result<bool, ProjectionError> {
        Ok(self.read(|m| m.has_attended_event(customer, event)))
    }
    async fn get_event_attendees(&self, event: EventId) -> Result<Vec<CustomerId>, ProjectionError> {
        Ok(self.read(|m| m.get_event_attendees(event)))
    }
    async fn get_top_spenders(
        &self,
        currency: Currency,
        n: usize,
    ) -> Result<Vec<(CustomerId, MoneyTotal)>, ProjectionError> {
        Ok(self.read(|m| m.get_top_spenders(currency, n)))
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::{
        AvailableSeatsQueries, BTreeMap, Currency, CustomerHistoryQueries, CustomerId, CustomerProfile,
        CustomerTicketsQueries, DailySalesQueries, DaySales, EventId, GateCheckinsQueries, GateCounts, GateName,
        HeldTicket, MoneyTotal, NaiveDate, Order, ProjectionError, SalesAnalyticsQueries, SalesMetrics,
        SectionAvailability, SectionName, async_trait,
    };
    use crate::projections::PostgresReadModels;

    #[async_trait]
    impl AvailableSeatsQueries for PostgresReadModels {
        async fn get_availability(
            &self,
            event: EventId,
            section: &str,
        ) -> Result<Option<SectionAvailability>, ProjectionError> {
            PostgresReadModels::get_availability(self, event, section).await
        }
        async fn has_availability(
            &self,
            event: EventId,
            section: &str,
            quantity: u32,
        ) -> Result<bool, ProjectionError> {
            PostgresReadModels::has_availability(self, event, section, quantity).await
        }
        async fn get_total_available(&self, event: EventId) -> Result<u64, ProjectionError> {
            PostgresReadModels::get_total_available(self, event).await
        }
    }

    #[async_trait]
    impl SalesAnalyticsQueries for PostgresReadModels {
        async fn get_metrics(&self, event: EventId) -> Result<Option<SalesMetrics>, ProjectionError> {
            PostgresReadModels::get_metrics(self, event).await
        }
        async fn get_total_revenue_all_events(&self) -> Result<Vec<MoneyTotal>, ProjectionError> {
            PostgresReadModels::get_total_revenue_all_events(self).await
        }
        async fn get_most_popular_section(
            &self,
            event: EventId,
        ) -> Result<Option<(SectionName, u64)>, ProjectionError> {
            PostgresReadModels::get_most_popular_section(self, event).await
        }
    }

    #[async_trait]
    impl CustomerHistoryQueries for PostgresReadModels {
        async fn get_customer_profile(&self, customer: CustomerId) -> Result<Option<CustomerProfile>, ProjectionError> {
            PostgresReadModels::get_customer_profile(self, customer).await
        }
        async fn has_attended_event(&self, customer: CustomerId, event: EventId) -> Result<bool, ProjectionError> {
            PostgresReadModels::has_attended_event(self, customer, event).await
        }
        async fn get_event_attendees(&self, event: EventId) -> Result<Vec<CustomerId>, ProjectionError> {
            PostgresReadModels::get_event_attendees(self, event).await
        }
        async fn get_top_spenders(
            &self,
            currency: Currency,
            n: usize,
        ) -> Result<Vec<(CustomerId, MoneyTotal)>, ProjectionError> {
            PostgresReadModels::get_top_spenders(self, currency, n).await
        }
    }
    #[async_trait]
    impl CustomerTicketsQueries for PostgresReadModels {
        async fn orders(&self, customer: CustomerId) -> Result<Vec<Order>, ProjectionError> {
            PostgresReadModels::get_orders(self, customer).await
        }
        async fn tickets_held(&self, customer: CustomerId) -> Result<Vec<HeldTicket>, ProjectionError> {
            PostgresReadModels::get_tickets_held(self, customer).await
        }
        async fn valid_tickets_held(&self, customer: CustomerId) -> Result<Vec<HeldTicket>, ProjectionError> {
            PostgresReadModels::get_valid_tickets_held(self, customer).await
        }
    }

    #[async_trait]
    impl GateCheckinsQueries for PostgresReadModels {
        async fn gates(&self, event: EventId) -> Result<BTreeMap<GateName, GateCounts>, ProjectionError> {
            PostgresReadModels::get_gates(self, event).await
        }
        async fn gate(&self, event: EventId, gate: &GateName) -> Result<Option<GateCounts>, ProjectionError> {
            PostgresReadModels::get_gate(self, event, gate).await
        }
        async fn currently_inside(&self, event: EventId) -> Result<u64, ProjectionError> {
            PostgresReadModels::get_currently_inside(self, event).await
        }
    }

    #[async_trait]
    impl DailySalesQueries for PostgresReadModels {
        async fn daily_sales(&self, event: EventId) -> Result<Vec<DaySales>, ProjectionError> {
            PostgresReadModels::get_daily_sales(self, event).await
        }
        async fn day_sales(&self, event: EventId, day: NaiveDate) -> Result<Option<DaySales>, ProjectionError> {
            PostgresReadModels::get_day_sales(self, event, day).await
        }
    }
}
