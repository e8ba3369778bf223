//! The query API of each read model as a trait, implemented by both storages, so callers can hold
//! a `&dyn AvailableSeatsQueries` without caring where the rows live.

use async_trait::async_trait;

use crate::domain::{Currency, CustomerId, EventId, MoneyTotal, SectionName};

use super::{
    AvailableSeatsProjection, CustomerHistoryProjection, CustomerProfile, ProjectionError, ProjectionHandle,
    SalesAnalyticsProjection, SalesMetrics, SectionAvailability,
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
        AvailableSeatsQueries, Currency, CustomerHistoryQueries, CustomerId, CustomerProfile, EventId, MoneyTotal,
        ProjectionError, SalesAnalyticsQueries, SalesMetrics, SectionAvailability, SectionName, async_trait,
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
}
