//! Engine + dispatcher + outbox, stepped together: what the aggregator's background task and
//! the tests drive.

use std::sync::Arc;

use kilowatch_model::Timestamp;

use crate::clock::Clock;
use crate::config::Routing;
use crate::dispatch::{DispatchState, Dispatcher, Notification};
use crate::engine::{Engine, EngineState, Sample};
use crate::outbox::{Outbox, OutboxError};
use crate::rule::Rule;

pub struct Pipeline {
    pub engine: Engine,
    pub dispatcher: Dispatcher,
    pub outbox: Arc<Outbox>,
    pub clock: Arc<dyn Clock>,
}

impl Pipeline {
    /// Restores the state a previous run committed, if any.
    pub fn open(rules: Vec<Rule>, routing: Routing, outbox: Arc<Outbox>, clock: Arc<dyn Clock>) -> Result<Self, OutboxError> {
        let es: EngineState = outbox.load("engine")?.unwrap_or_default();
        let ds: DispatchState = outbox.load("dispatch")?.unwrap_or_default();
        tracing::info!(alerts = es.alerts.len(), groups = ds.groups.len(), rules = rules.len(), "alert state restored");
        Ok(Pipeline { engine: Engine::new(rules, es), dispatcher: Dispatcher::new(routing, ds), outbox, clock })
    }

    /// Evaluates, dispatches and commits one step; returns the notifications enqueued.
    pub fn tick(&mut self, samples: &[Sample]) -> Result<Vec<Notification>, OutboxError> {
        let now: Timestamp = self.clock.now();
        self.engine.evaluate(now, samples);
        let silences = self.outbox.silences()?;
        let alerts: Vec<_> = self.engine.alerts().cloned().collect();
        let notes = self.dispatcher.tick(now, &alerts, &silences);
        self.outbox.commit_tick(&[("engine", &self.engine.state), ("dispatch", &self.dispatcher.state), ("rules", &self.engine.rules)], &notes)?;
        Ok(notes)
    }
}
