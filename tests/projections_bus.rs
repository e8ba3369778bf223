//! Read models fed from the in-memory event bus: global order restored from the relay's stamps,
//! restarts and redeliveries that neither lose nor double count, and loud errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bus_feed_support;
mod projections_support;

use std::sync::Arc;

use boxoffice::aggregates::TICKETING_CATEGORIES;
use boxoffice::event_bus::{EventBus, MemoryEventBus, Outgoing, TopicRouter};
use boxoffice::event_store::{Envelope, EventStore, MemoryEventStore};
use boxoffice::projections::{
    BusProjectionRunner, BusRunnerConfig, ProjectionError, ProjectionHandle, SalesAnalyticsProjection,
};
use bus_feed_support::{CountingBus, Models, WAIT, relay, unique};
use futures::{FutureExt, StreamExt};
use projections_support::{append_all, envelopes, workload};

fn topics() -> Vec<String> {
    TopicRouter::default().topics_for_categories(TICKETING_CATEGORIES)
}

/// Publishes `log[range]` as the relay would, each message stamped with its predecessor in `log`.
async fn publish(bus: &dyn EventBus, log: &[Envelope], range: std::ops::Range<usize>) {
    let router = TopicRouter::default();
    let topics: Vec<String> =
        log[range.clone()].iter().map(|e| router.topic_for_stream(e.stream_id.as_str())).collect();
    let messages: Vec<Outgoing<'_>> = log[range.clone()]
        .iter()
        .zip(&topics)
        .zip(range)
        .map(|((envelope, topic), index)| Outgoing {
            topic,
            key: envelope.stream_id.as_str(),
            envelope,
            previous_position: Some(if index == 0 { 0 } else { log[index - 1].global_position }),
        })
        .collect();
    bus.publish_batch(&messages).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_fed_models_answer_as_the_store_rebuild() {
    bus_feed_support::bus_fed_models_answer_as_the_store_rebuild(Arc::new(MemoryEventBus::with_partitions(3))).await;
}

/// A runner stopped while it holds events it could not apply yet (an earlier one is missing)
/// must leave them unacknowledged: the next runner of the group gets them again. In each
/// partition the held events sit between applied ones (a lagging partition): only the applied
/// prefix may be acknowledged, and the applied events after the held ones come again and must
/// not count twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runner_misses_nothing_and_counts_nothing_twice() {
    let log = envelopes(&workload(30));
    let bus = CountingBus::new(Arc::new(MemoryEventBus::with_partitions(3)));
    let models = Models::new();
    let group = unique("restart");
    let (gap, end) = (log.len() / 3, log.len() * 2 / 3);

    publish(&bus, &log, 0..gap / 2).await;
    publish(&bus, &log, gap + 1..end).await;
    publish(&bus, &log, gap / 2..gap).await;
    let runners = models.start(&bus, &topics(), &group).await;
    bus.wait_for_deliveries(3 * (end - 1)).await;
    runners.stop().await;
    assert_eq!(models.sales.position(), log[gap - 1].global_position, "applied up to the gap");

    publish(&bus, &log, gap..gap + 1).await;
    publish(&bus, &log, end..log.len()).await;
    let runners = models.start(&bus, &topics(), &group).await;
    runners.wait_for(&models, log.len() as u64).await.stop().await;
    let again = *bus.delivered.borrow() - 3 * (end - 1);
    let (held, new) = (end - 1 - gap, log.len() - end + 1);
    assert!(again > 3 * (held + new), "applied events came again too ({again} deliveries)");
    models.assert_match_rebuild(&log);
}

/// The whole log published again (a relay that lost its checkpoint) after the runners had
/// applied and acknowledged it, then new events: the replayed messages change nothing and are
/// acknowledged, so the group does not get them a third time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_messages_change_nothing_and_are_acknowledged() {
    let memory = MemoryEventBus::with_partitions(3);
    let bus: Arc<dyn EventBus> = Arc::new(memory.clone());
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let router = TopicRouter::default();
    let actions = workload(60);
    let (before, after) = actions.split_at(actions.len() * 2 / 3);
    let models = Models::new();
    let group = unique("replay");
    let runners = models.start(&*bus, &topics(), &group).await;

    let first = relay(&store, &bus, &router).spawn();
    append_all(&*store, before, 5).await;
    let applied = store.head_position().await.unwrap();
    let runners = runners.wait_for(&models, applied).await;
    first.stop().await.unwrap();
    let answers = models.answers();

    let second = relay(&store, &bus, &router).spawn();
    let mut progress = second.progress();
    tokio::time::timeout(WAIT, progress.wait_for(|p| *p >= applied)).await.unwrap().unwrap();
    assert_eq!(models.answers(), answers, "the replay changed the models");
    assert_eq!(models.sales.position(), applied);

    append_all(&*store, after, 5).await;
    let head = store.head_position().await.unwrap();
    let runners = runners.wait_for(&models, head).await;
    second.stop().await.unwrap();
    runners.stop().await;
    models.assert_match_rebuild(&store.read_all(0, usize::MAX).await.unwrap());

    for model in ["seats", "sales", "customers"] {
        let mut again = memory.subscribe(&topics(), &format!("{group}-{model}")).await.unwrap();
        let pending = again.next().now_or_never();
        assert!(pending.is_none(), "{model}: a message is still unacknowledged: {pending:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_a_previous_position_stops_the_runner() {
    let log = envelopes(&workload(1));
    let bus = CountingBus::new(Arc::new(MemoryEventBus::new()));
    let handle = ProjectionHandle::new(SalesAnalyticsProjection::new());
    let runner = BusProjectionRunner::start(&bus, &topics(), "unstamped", handle.clone(), BusRunnerConfig::default())
        .await
        .unwrap();
    let topic = TopicRouter::default().topic_for_stream(log[0].stream_id.as_str());
    bus.publish(&topic, log[0].stream_id.as_str(), &log[0]).await.unwrap();
    bus.wait_for_deliveries(1).await;
    let error = runner.stop().await.unwrap_err();
    assert!(matches!(&error, ProjectionError::Unstamped { topic: t, .. } if *t == topic), "{error}");
    assert_eq!(handle.position(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_that_never_fills_stops_the_runner() {
    let log = envelopes(&workload(2));
    let bus = CountingBus::new(Arc::new(MemoryEventBus::new()));
    let handle = ProjectionHandle::new(SalesAnalyticsProjection::new());
    let config = BusRunnerConfig { max_waiting: 5, ..BusRunnerConfig::default() };
    let runner = BusProjectionRunner::start(&bus, &topics(), "gap", handle.clone(), config).await.unwrap();
    publish(&bus, &log, 1..10).await;
    bus.wait_for_deliveries(6).await;
    let error = runner.stop().await.unwrap_err();
    assert!(matches!(error, ProjectionError::Gap { position: 0, waiting: 6.., earliest: 1, .. }), "{error}");
    assert_eq!(handle.position(), 0);
}
