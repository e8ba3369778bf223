//! Effects are values: a reducer describes the work to do and the runtime does it.

use std::fmt;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use smallvec::SmallVec;

/// Work a reducer asks its runtime to perform after it returns.
pub enum Effect<A> {
    /// Nothing to do.
    None,
    /// Run a future; the action it yields (if any) is fed back into the reducer.
    Future(BoxFuture<'static, Option<A>>),
    /// Feed `action` back into the reducer once `duration` has passed on the runtime's clock.
    Delay {
        /// How long to wait.
        duration: Duration,
        /// What to send when the wait is over.
        action: Box<A>,
    },
    /// Run these effects concurrently.
    Parallel(Vec<Effect<A>>),
    /// Run these effects one after another; each finishes (and its action is reduced) before the
    /// next starts.
    Sequential(Vec<Effect<A>>),
    /// Events the reducer has already applied to its state. The runtime appends them durably
    /// before it runs any other effect of the same reduction; if the append fails the state is
    /// rebuilt from the journal, so state never runs ahead of what was stored.
    Persist(SmallVec<[A; 4]>),
    /// The action being reduced was refused; the boxed action (a rejection) says why. Nothing
    /// was persisted and the state is unchanged.
    Reject(Box<A>),
}

impl<A> Effect<A> {
    /// Wraps an action as an effect that sends it straight back into the reducer.
    pub fn send(action: A) -> Self
    where
        A: Send + 'static,
    {
        Effect::Future(Box::pin(futures::future::ready(Some(action))))
    }

    /// Converts the actions this effect carries or produces, so a child reducer's effects can
    /// be returned by a parent reducer whose action type wraps the child's.
    pub fn map<B, F>(self, f: F) -> Effect<B>
    where
        A: Send + 'static,
        B: Send + 'static,
        F: Fn(A) -> B + Clone + Send + Sync + 'static,
    {
        match self {
            Effect::None => Effect::None,
            Effect::Future(fut) => Effect::Future(Box::pin(fut.map(move |a| a.map(f)))),
            Effect::Delay { duration, action } => Effect::Delay { duration, action: Box::new(f(*action)) },
            Effect::Parallel(effects) => Effect::Parallel(effects.into_iter().map(|e| e.map(f.clone())).collect()),
            Effect::Sequential(effects) => Effect::Sequential(effects.into_iter().map(|e| e.map(f.clone())).collect()),
            Effect::Persist(events) => Effect::Persist(events.into_iter().map(&f).collect()),
            Effect::Reject(action) => Effect::Reject(Box::new(f(*action))),
        }
    }
}

impl<A: fmt::Debug> fmt::Debug for Effect<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::None => f.write_str("None"),
            Effect::Future(_) => f.write_str("Future(..)"),
            Effect::Delay { duration, action } => {
                f.debug_struct("Delay").field("duration", duration).field("action", action).finish()
            }
            Effect::Parallel(effects) => f.debug_tuple("Parallel").field(effects).finish(),
            Effect::Sequential(effects) => f.debug_tuple("Sequential").field(effects).finish(),
            Effect::Persist(events) => f.debug_tuple("Persist").field(events).finish(),
            Effect::Reject(action) => f.debug_tuple("Reject").field(action).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn map_converts_every_nested_action() {
        let effect: Effect<u32> = Effect::Sequential(vec![
            Effect::send(1),
            Effect::Delay { duration: Duration::from_secs(1), action: Box::new(2) },
            Effect::Parallel(vec![Effect::Persist(smallvec::smallvec![3]), Effect::Reject(Box::new(4))]),
        ]);
        let Effect::Sequential(mapped) = effect.map(|n| format!("#{n}")) else { unreachable!("map keeps the shape") };
        let mut mapped = mapped.into_iter();
        let Some(Effect::Future(fut)) = mapped.next() else { unreachable!() };
        assert_eq!(fut.await, Some("#1".to_owned()));
        let Some(Effect::Delay { action, .. }) = mapped.next() else { unreachable!() };
        assert_eq!(*action, "#2");
        let Some(Effect::Parallel(inner)) = mapped.next() else { unreachable!() };
        assert_eq!(format!("{inner:?}"), r##"[Persist(["#3"]), Reject("#4")]"##);
    }
}
