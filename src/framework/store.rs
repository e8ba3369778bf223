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
    busy: AtomicUsize,
    parked: SyncMutex<BTreeMap<DateTime<Utc>, usize>>,
    changed: Notify,
}

impl<R: Reducer> Clone for Store<R> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<R> Store<R>
where
    R: Reducer,
    R::State: Default,
    R::Action: Clone + Send + Sync + std::fmt::Debug,
{
    /// A store whose persisted events are kept in a [`MemoryJournal`].
    pub fn new(reducer: R, state: R::State, env: R::Env, clock: Arc<dyn Clock>) -> Self {
        Self::with_journal(reducer, state, env, clock, Arc::new(MemoryJournal::default()))
    }

    /// A store that persists into `journal`.
    pub fn with_journal(
        reducer: R,
        state: R::State,
        env: R::Env,
        clock: Arc<dyn Clock>,
        journal: Arc<dyn Journal<R::Action>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                reducer,
                env,
                state: Mutex::new(state),
                clock,
                journal,
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
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        let effects = inner.reducer.reduce(&mut state, action, &inner.env);
        let mut persisted = SmallVec::<[R::Action; 4]>::new();
        let mut rejection = None;
        let mut rest = Vec::new();
        for effect in effects {
            match effect {
                Effect::Persist(events) => persisted.extend(events),
                Effect::Reject(action) => rejection = Some(*action),
                Effect::None => {}
                other => rest.push(other),
            }
        }
        if !persisted.is_empty()
            && let Err(error) = inner.journal.append(&persisted).await
        {
            *state = self.rebuild().await?;
            return Err(error.into());
        }
        drop(state);
        for effect in rest {
            self.spawn(effect);
        }
        match rejection {
            Some(rejection) => Err(StoreError::Rejected(rejection)),
            None => Ok(persisted),
        }
    }

    /// Reads the state.
    pub async fn with_state<T>(&self, read: impl FnOnce(&R::State) -> T) -> T {
        read(&*self.inner.state.lock().await)
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
        let mut state = R::State::default();
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
                Effect::Persist(events) => {
                    if let Err(error) = store.inner.journal.append(&events).await {
                        tracing::error!(%error, "persisting events from a nested effect failed");
                    }
                }
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
