use std::time::Instant;

use kilowatch_model::Timestamp;

/// Where sample timestamps come from: the wall clock, or a scaled clock that runs `speed`
/// times faster from an origin (the demo's `--speed 60`).
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    Wall,
    Scaled { origin_wall: Instant, origin: Timestamp, speed: f64 },
}

impl Clock {
    pub fn scaled(origin: Timestamp, speed: f64) -> Clock {
        Clock::Scaled { origin_wall: Instant::now(), origin, speed }
    }
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::Wall => Timestamp::now(),
            Clock::Scaled { origin_wall, origin, speed } => Timestamp(origin.0 + (origin_wall.elapsed().as_secs_f64() * speed * 1e9) as i64),
        }
    }
}
