//! Bounds on what comes from upstream: sizes and durations written for error messages, and the
//! minimum-rate rule that ends an artifact body trickling in too slowly.

use std::time::{Duration, Instant};

pub use cairn_ecosystem::units::size;

/// `d` as the flags write durations (`120s`, `1500ms`).
pub fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The minimum-rate rule for an artifact body: every `window` must bring at least
/// `rate × window` bytes. A body that keeps sending a byte now and then (never silent long
/// enough for the read timeout) is ended after one window instead of holding its download slot
/// for ever; a slow but steady one goes on.
#[derive(Debug)]
pub struct MinRate {
    window: Duration,
    rate: u64,
    started: Instant,
    received: u64,
}

impl MinRate {
    pub fn new(window: Duration, rate: u64) -> Self {
        MinRate {
            window: window.max(Duration::from_millis(1)),
            rate,
            started: Instant::now(),
            received: 0,
        }
    }

    /// Count `n` more bytes; an error (the reason) when the window that just ended brought too
    /// few.
    pub fn add(&mut self, n: u64) -> Result<(), String> {
        self.received += n;
        self.check()
    }

    /// An error when the current window is over and brought too few bytes. Also called when no
    /// byte came for a while.
    pub fn check(&mut self) -> Result<(), String> {
        let elapsed = self.started.elapsed();
        if elapsed < self.window {
            return Ok(());
        }
        let needed = (self.rate as f64 * elapsed.as_secs_f64()) as u64;
        if self.received < needed {
            return Err(format!(
                "sent {} in {}, below the minimum of {}/s",
                size(self.received),
                duration(Duration::from_millis(elapsed.as_millis() as u64)),
                size(self.rate)
            ));
        }
        self.started = Instant::now();
        self.received = 0;
        Ok(())
    }

    /// How long until the current window ends.
    pub fn until_check(&self) -> Duration {
        self.window.saturating_sub(self.started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_are_written_for_people() {
        assert_eq!(size(128 << 20), "128 MiB");
        assert_eq!(size(3 << 29), "1.5 GiB");
        assert_eq!(size(512), "512 bytes");
        assert_eq!(duration(Duration::from_secs(120)), "120s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn a_trickle_fails_the_minimum_rate_after_one_window() {
        let mut rate = MinRate::new(Duration::from_millis(50), 1 << 20);
        assert!(rate.add(1).is_ok(), "within the first window");
        std::thread::sleep(Duration::from_millis(60));
        let error = rate.add(1).expect_err("too slow");
        assert!(error.contains("below the minimum of 1 MiB/s"), "{error}");
    }

    #[test]
    fn a_steady_body_passes_window_after_window() {
        let mut rate = MinRate::new(Duration::from_millis(20), 1000);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(25));
            assert!(rate.add(1000).is_ok());
        }
    }
}
