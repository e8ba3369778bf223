//! The runtime: owns a reducer's state, serialises the actions sent to it, persists what the
//! reducer persists and runs the other effects on tokio, feeding their actions back in.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use smallvec::SmallVec;
use tokio::sync::{Mutex, Notify};

use super::{Clock, Effect, Journal, JournalError, MemoryJournal, Reducer};

/// Why [`Store::send`] did not complete an action.
#[derive(Debug, thiserror::Error)]
pub enum StoreError<A: std::fmt::Debug> {
    /// The reducer refused the action; the rejection says why.
    #[error("action rejected: {0:?}")]
    Rejected(A),
    /// The reducer accepted the action but its events could not be persisted; the state has been
    /// rebuilt from the journal, so nothing of the action remains.
    #[error("persisting events failed: {0}")]
    Journal(#[from] JournalError),
}

/// Runs a [`Reducer`]. Cloning a store gives another handle to the same state.
///
/// ```
/// # use boxoffice::framework::{Effect, Effects, Reducer, Store, SystemClock};
/// # use smallvec::smallvec;
/// # use std::sync::Arc;
/// struct Doubler;
/// impl Reducer for Doubler {
///     type State = Vec<u32>;
///     type Action = u32;
///     type Env = ();
///     fn reduce(&self, seen: &mut Vec<u32>, n: u32, _: &()) -> Effects<u32> {
///         seen.push(n);
///         if n < 8 { smallvec![Effect::send(n * 2)] } else { smallvec![] }
///     }
/// }
/// # tokio_test();
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn tokio_test() {
/// let store = Store::new(Doubler, Vec::new(), (), Arc::new(SystemClock));
/// store.send(1).await.unwrap();
/// store.settled().await;
/// assert_eq!(store.with_state(|s| s.clone()).await, vec![1, 2, 4, 8]);
/// # }
/// ```
pub struct Store<R: Reducer> {
    inner: Arc<Inner<R>>,
}

struct Inner<R: Reducer> {
    reducer: R,
    env: R::Env,
    state: Mutex<R::State>,
    clock: Arc<dyn Clock>,
    journal: Arc<dyn Journal<R::Action>>,
    observer: Option<PersistedObserver<R::Action>>,
    /// What the journal's events are folded onto when the state is rebuilt (in a mutex only
    /// so the store stays `Sync` for any `Send` state).
    base: SyncMutex<R::State>,
    busy: AtomicUsize,
    parked: SyncMutex<BTreeMap<DateTime<Utc>, usize>>,
    changed: Notify,
}

impl<R: Reducer> Clone for Store<R> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

/// Called with the events of every successful append, in append order, before the effects of
/// the same reduction start: the hook a runtime uses to react to what was just committed.
pub type PersistedObserver<A> = Arc<dyn Fn(&[A]) + Send + Sync>;

/// What one action of a [`Store::send_batch`] came to.
pub type ActionOutcome<A> = Result<SmallVec<[A; 4]>, A>;

impl<R> Store<R>
where
    R: Reducer,
    R::State: Clone,
    R::Action: Clone + Send + Sync + std::fmt::Debug,
{
    /// A store whose persisted events are kept in a [`MemoryJournal`], starting from `state`.
    pub fn new(reducer: R, state: R::State, env: R::Env, clock: Arc<dyn Clock>) -> Self {
        Self::build(reducer, state, env, clock, Arc::new(MemoryJournal::default()), None)
    }

    /// A store that persists into `journal`, starting from `base` (the default state, or a
    /// snapshot) with the journal's events folded onto it, and tells `observer` (if any) about
    /// every append. The journal must replay exactly the events that came after `base`.
    ///
    /// # Errors
    /// The journal's error if its events cannot be read.
    pub async fn restore(
        reducer: R,
        base: R::State,
        env: R::Env,
        clock: Arc<dyn Clock>,
        journal: Arc<dyn Journal<R::Action>>,
        observer: Option<PersistedObserver<R::Action>>,
    ) -> Result<Self, JournalError> {
        let store = Self::build(reducer, base, env, clock, journal, observer);
        let state = store.rebuild().await?;
        *store.inner.state.lock().await = state;
        Ok(store)
    }

    fn build(
        reducer: R,
        state: R::State,
        env: R::Env,
        clock: Arc<dyn Clock>,
        journal: Arc<dyn Journal<R::Action>>,
        observer: Option<PersistedObserver<R::Action>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                reducer,
                env,
                base: SyncMutex::new(state.clone()),
                state: Mutex::new(state),
                clock,
                journal,
                observer,
                busy: AtomicUsize::new(0),
                parked: SyncMutex::new(BTreeMap::new()),
                changed: Notify::new(),
            }),
        }
    }

    /// Reduces `action`, persists the events it produced, starts its other effects and returns
    /// the persisted events.
    ///
    /// # Errors
    /// [`StoreError::Rejected`] when the reducer refused the action, [`StoreError::Journal`] when
    /// persisting failed (the state is then rebuilt from the journal).
    pub async fn send(&self, action: R::Action) -> Result<SmallVec<[R::Action; 4]>, StoreError<R::Action>> {
        let mut outcomes = self.send_batch(vec![action]).await?;
        match outcomes.pop() {
            Some(Ok(events)) => Ok(events),
            Some(Err(rejection)) => Err(StoreError::Rejected(rejection)),
            None => Ok(SmallVec::new()),
        }
    }

    /// Reduces several actions in order and persists all their events in one journal append
    /// (group commit). Each action gets its own outcome: its events, or its rejection. If the
    /// append fails, none of the batch happened: the state is rebuilt from the journal and the
    /// error is returned for the whole batch, so the caller can retry it.
    ///
    /// # Errors
    /// [`JournalError`] when the append (or the rebuild after it failed) fails.
    pub async fn send_batch(&self, actions: Vec<R::Action>) -> Result<Vec<ActionOutcome<R::Action>>, JournalError> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        let mut outcomes = Vec::with_capacity(actions.len());
        let mut all_events = Vec::new();
        let mut rest = Vec::new();
        for action in actions {
            let mut persisted = SmallVec::<[R::Action; 4]>::new();
            let mut rejection = None;
            for effect in inner.reducer.reduce(&mut state, action, &inner.env) {
                match effect {
                    Effect::Persist(events) => persisted.extend(events),
                    Effect::Reject(action) => rejection = Some(*action),
                    Effect::None => {}
                    other => rest.push(other),
                }
            }
            all_events.extend(persisted.iter().cloned());
            outcomes.push(rejection.map_or(Ok(persisted), Err));
        }
        if !all_events.is_empty() {
            if let Err(error) = inner.journal.append(&all_events).await {
                *state = self.rebuild().await?;
                return Err(error);
            }
            if let Some(observer) = &inner.observer {
                observer(&all_events);
            }
        }
        drop(state);
        for effect in rest {
            self.spawn(effect);
        }
        Ok(outcomes)
    }

    /// Reads the state.
    pub async fn with_state<T>(&self, read: impl FnOnce(&R::State) -> T) -> T {
        read(&*self.inner.state.lock().await)
    }

    /// Rebuilds the state from the journal, picking up events other writers appended.
    ///
    /// # Errors
    /// The journal's error if it cannot be read; the state is then unchanged.
    pub async fn reload(&self) -> Result<(), JournalError> {
        let mut state = self.inner.state.lock().await;
        *state = self.rebuild().await?;
        Ok(())
    }

    /// Every event persisted so far.
    ///
    /// # Errors
    /// The journal's error if it cannot be read.
    pub async fn history(&self) -> Result<Vec<R::Action>, JournalError> {
        self.inner.journal.replay().await
    }

    /// Waits until no effect is running and no delayed action is due on the store's clock.
    /// Delays whose deadline has not been reached do not count, so tests advance a
    /// [`FixedClock`](super::FixedClock) and then await `settled` instead of sleeping.
    pub async fn settled(&self) {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_settled() {
                return;
            }
            changed.await;
        }
    }

    fn is_settled(&self) -> bool {
        if self.inner.busy.load(Ordering::SeqCst) != 0 {
            return false;
        }
        let now = self.inner.clock.now();
        self.inner.parked.lock().map_or(true, |parked| parked.keys().next().is_none_or(|due| *due > now))
    }

    async fn rebuild(&self) -> Result<R::State, JournalError> {
        let mut state = self.inner.base.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for event in self.inner.journal.replay().await? {
            drop(self.inner.reducer.reduce(&mut state, event, &self.inner.env));
        }
        Ok(state)
    }

    fn spawn(&self, effect: Effect<R::Action>) {
        self.inner.busy.fetch_add(1, Ordering::SeqCst);
        let store = self.clone();
        tokio::spawn(async move {
            store.run(effect).await;
            store.inner.busy.fetch_sub(1, Ordering::SeqCst);
            store.inner.changed.notify_waiters();
        });
    }

    fn run(&self, effect: Effect<R::Action>) -> BoxFuture<'static, ()> {
        let store = self.clone();
        Box::pin(async move {
            match effect {
                Effect::None => {}
                Effect::Future(future) => {
                    if let Some(action) = future.await {
                        store.feed_back(action).await;
                    }
                }
                Effect::Delay { duration, action } => {
                    let clock = &store.inner.clock;
                    let due = clock.now() + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
                    store.park(due, 1);
                    store.inner.busy.fetch_sub(1, Ordering::SeqCst);
                    store.inner.changed.notify_waiters();
                    clock.sleep_until(due).await;
                    store.inner.busy.fetch_add(1, Ordering::SeqCst);
                    store.park(due, -1);
                    store.feed_back(*action).await;
                }
                Effect::Parallel(effects) => {
                    futures::future::join_all(effects.into_iter().map(|e| store.run(e))).await;
                }
                Effect::Sequential(effects) => {
                    for effect in effects {
                        store.run(effect).await;
                    }
                }
                Effect::Persist(events) => match store.inner.journal.append(&events).await {
                    Ok(()) => {
                        if let Some(observer) = &store.inner.observer {
                            observer(&events);
                        }
                    }
                    Err(error) => tracing::error!(%error, "persisting events from a nested effect failed"),
                },
                Effect::Reject(rejection) => tracing::debug!(?rejection, "nested effect rejected"),
            }
        })
    }

    async fn feed_back(&self, action: R::Action) {
        if let Err(error) = self.send(action).await {
            tracing::debug!(%error, "action produced by an effect was not applied");
        }
    }

    fn park(&self, due: DateTime<Utc>, delta: isize) {
        if let Ok(mut parked) = self.inner.parked.lock() {
            let count = parked.entry(due).or_insert(0);
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                parked.remove(&due);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::framework::{Effects, FixedClock};
    use async_trait::async_trait;
    use chrono::TimeZone;
    use smallvec::smallvec;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// A bank account: `Deposit` persists `Deposited`; overdrawing is refused; `Remind`
    /// schedules a delayed `Deposit(1)`.
    struct Account;

    #[derive(Debug, Clone, PartialEq)]
    enum Act {
        Deposit(i64),
        Deposited(i64),
        Remind(u64),
        Refused,
    }

    impl Reducer for Account {
        type State = i64;
        type Action = Act;
        type Env = ();

        fn reduce(&self, balance: &mut i64, action: Act, (): &()) -> Effects<Act> {
            match action {
                Act::Deposit(n) if *balance + n < 0 => smallvec![Effect::Reject(Box::new(Act::Refused))],
                Act::Deposit(n) => {
                    *balance += n;
                    smallvec![Effect::Persist(smallvec![Act::Deposited(n)])]
                }
                Act::Deposited(n) => {
                    *balance += n;
                    smallvec![]
                }
                Act::Remind(secs) => {
                    smallvec![Effect::Delay { duration: Duration::from_secs(secs), action: Box::new(Act::Deposit(1)) }]
                }
                Act::Refused => smallvec![],
            }
        }
    }

    fn clock() -> FixedClock {
        FixedClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap())
    }

    #[tokio::test]
    async fn batch_reduces_in_order_and_persists_once() {
        let store = Store::new(Account, 0, (), Arc::new(clock()));
        let outcomes = store.send_batch(vec![Act::Deposit(5), Act::Deposit(-10), Act::Deposit(-5)]).await.unwrap();
        assert_eq!(outcomes[0], Ok(smallvec![Act::Deposited(5)]));
        assert_eq!(outcomes[1], Err(Act::Refused));
        assert_eq!(outcomes[2], Ok(smallvec![Act::Deposited(-5)]));
        assert_eq!(store.history().await.unwrap(), vec![Act::Deposited(5), Act::Deposited(-5)]);
        assert_eq!(store.with_state(|b| *b).await, 0);
    }

    #[tokio::test]
    async fn delayed_action_fires_when_fixed_clock_passes_deadline() {
        let clock = clock();
        let store = Store::new(Account, 0, (), Arc::new(clock.clone()));
        store.send(Act::Remind(300)).await.unwrap();
        store.settled().await;
        assert_eq!(store.with_state(|b| *b).await, 0, "not due yet");
        clock.advance(Duration::from_secs(300));
        store.settled().await;
        assert_eq!(store.with_state(|b| *b).await, 1);
    }

    struct FailingJournal {
        inner: MemoryJournal<Act>,
        fail: AtomicBool,
    }

    #[async_trait]
    impl Journal<Act> for FailingJournal {
        async fn append(&self, events: &[Act]) -> Result<(), JournalError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(JournalError::Conflict { expected: 0, actual: 1 });
            }
            self.inner.append(events).await
        }
        async fn replay(&self) -> Result<Vec<Act>, JournalError> {
            self.inner.replay().await
        }
    }

    #[tokio::test]
    async fn failed_append_leaves_state_as_the_journal_says_and_observer_silent() {
        let journal = Arc::new(FailingJournal { inner: MemoryJournal::default(), fail: AtomicBool::new(false) });
        let seen = Arc::new(SyncMutex::new(Vec::new()));
        let observer: PersistedObserver<Act> = {
            let seen = Arc::clone(&seen);
            Arc::new(move |events: &[Act]| seen.lock().unwrap().extend_from_slice(events))
        };
        let store = Store::restore(Account, 0, (), Arc::new(clock()), journal.clone(), Some(observer)).await.unwrap();
        store.send(Act::Deposit(7)).await.unwrap();
        journal.fail.store(true, Ordering::SeqCst);
        assert!(matches!(store.send(Act::Deposit(3)).await, Err(StoreError::Journal(JournalError::Conflict { .. }))));
        assert_eq!(store.with_state(|b| *b).await, 7);
        assert_eq!(*seen.lock().unwrap(), vec![Act::Deposited(7)]);
    }

    #[tokio::test]
    async fn restore_folds_the_journal() {
        let journal = Arc::new(MemoryJournal::default());
        journal.append(&[Act::Deposited(2), Act::Deposited(3)]).await.unwrap();
        let store = Store::restore(Account, 0, (), Arc::new(clock()), journal, None).await.unwrap();
        assert_eq!(store.with_state(|b| *b).await, 5);
    }
}
