//! The original scheduler: every `--tick-interval` one connected user, chosen uniformly at
//! random, gets `{"time": "<unix millis>"}`, through the same path as any published event.

use crate::hub::Hub;
use app::event::{EventName, PublishRequest, Recipients};
use rand::SeedableRng;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::{interval_at, Instant, MissedTickBehavior};

/// Runs until the hub shuts down; returns at once when `every` is `None` (ticker off).
pub async fn run(hub: Hub, every: Option<Duration>) {
    let Some(every) = every else { return };
    let shutdown = hub.shutdown_token();
    let mut ticks = interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rng = rand::rngs::StdRng::from_os_rng();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Some(user) = hub.random_user(&mut rng) {
            let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            let data = serde_json::json!({ "time": millis.to_string() }).to_string();
            let tick = PublishRequest::new(Recipients::Users(vec![user]), EventName::message(), data);
            if let Err(e) = hub.publish(tick).await {
                tracing::warn!(cause = %e.0, "tick not sent");
            }
        }
    }
}
