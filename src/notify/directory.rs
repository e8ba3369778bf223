//! [`CustomerDirectory`]: the application's answer to "where do this customer's notifications go".

use async_trait::async_trait;

use super::EmailAddress;
use crate::domain::CustomerId;

/// The directory could not be asked (its database is down, say): an operational failure, which
/// the [`Notifier`](super::Notifier) retries. A customer the directory does not know is not an
/// error: [`CustomerDirectory::email`] answers `Ok(None)`.
#[derive(Debug, thiserror::Error)]
#[error("the customer directory could not be asked about customer {customer_id}")]
pub struct DirectoryError {
    /// The customer asked about.
    pub customer_id: CustomerId,
    /// What went wrong.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Resolves a customer to the address their notifications go to. The application owns the
/// addresses; boxoffice asks for one each time it sends and keeps none.
///
/// A closure `Fn(CustomerId) -> Option<EmailAddress>` is a directory (for addresses in memory);
/// implement the trait for one that has to await a database.
///
/// ```
/// use std::collections::HashMap;
/// use boxoffice::domain::CustomerId;
/// use boxoffice::notify::{CustomerDirectory, EmailAddress};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let ada = CustomerId::new_v4();
/// let addresses = HashMap::from([(ada, EmailAddress::new("ada@example.com")?)]);
/// let directory = move |customer: CustomerId| addresses.get(&customer).cloned();
/// assert_eq!(directory.email(ada).await?.map(|a| a.to_string()).as_deref(), Some("ada@example.com"));
/// assert_eq!(directory.email(CustomerId::new_v4()).await?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait CustomerDirectory: Send + Sync + 'static {
    /// The address of `customer`, or `None` when the directory knows none (the notification is
    /// then refused and reported, not retried).
    ///
    /// # Errors
    /// [`DirectoryError`] when the directory cannot be asked right now (retried).
    async fn email(&self, customer: CustomerId) -> Result<Option<EmailAddress>, DirectoryError>;
}

#[async_trait]
impl<F> CustomerDirectory for F
where
    F: Fn(CustomerId) -> Option<EmailAddress> + Send + Sync + 'static,
{
    async fn email(&self, customer: CustomerId) -> Result<Option<EmailAddress>, DirectoryError> {
        Ok(self(customer))
    }
}
