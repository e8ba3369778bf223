//! [`RecordingSink`]: a sink in memory, for tests and demos.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::watch;

use super::{Notification, NotificationSink, NotifyError};

/// Keeps every notification it is handed, in order, and can fail on cue: the test double of a
/// [`NotificationSink`], as [`SimulatedGateway`](crate::system::SimulatedGateway) is of a payment
/// gateway. Clones share the record.
///
/// ```
/// use boxoffice::notify::RecordingSink;
///
/// let sink = RecordingSink::new();
/// sink.fail_next(2); // the next two deliveries fail with `NotifyError::Unavailable`
/// assert!(sink.delivered().is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct RecordingSink {
    inner: Arc<Mutex<Recorded>>,
    count: Arc<watch::Sender<usize>>,
}

#[derive(Debug, Default)]
struct Recorded {
    delivered: Vec<Notification>,
    fail_next: u32,
    failed: u32,
}

/// Why a [`RecordingSink`] failed a delivery: it was told to.
#[derive(Debug, thiserror::Error)]
#[error("the recording sink was told to fail this delivery")]
struct FailedOnCue;

impl Default for RecordingSink {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordingSink {
    /// An empty sink that delivers everything.
    #[must_use]
    pub fn new() -> Self {
        Self { inner: Arc::default(), count: Arc::new(watch::Sender::new(0)) }
    }

    /// Makes the next `times` deliveries fail with [`NotifyError::Unavailable`] (recording
    /// nothing), as a mail server that is down would.
    pub fn fail_next(&self, times: u32) {
        self.lock().fail_next = times;
    }

    /// Every notification delivered so far, in order.
    #[must_use]
    pub fn delivered(&self) -> Vec<Notification> {
        self.lock().delivered.clone()
    }

    /// How many deliveries failed on cue so far.
    #[must_use]
    pub fn failed(&self) -> u32 {
        self.lock().failed
    }

    /// The number of notifications delivered, to wait on (`wait_for(|n| *n >= 3)`).
    #[must_use]
    pub fn delivered_count(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl NotificationSink for RecordingSink {
    async fn deliver(&self, notification: &Notification) -> Result<(), NotifyError> {
        let count = {
            let mut recorded = self.lock();
            if recorded.fail_next > 0 {
                recorded.fail_next -= 1;
                recorded.failed += 1;
                return Err(NotifyError::Unavailable {
                    notification_id: notification.id(),
                    source: Box::new(FailedOnCue),
                });
            }
            recorded.delivered.push(notification.clone());
            recorded.delivered.len()
        };
        self.count.send_replace(count);
        Ok(())
    }
}
