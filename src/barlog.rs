//! Log lines that keep out of a progress bar's way: `cairn prefetch` runs a node in its own
//! process when none answers, and that node's log lines go through here, each written whole
//! while the bar is cleared ([`indicatif::ProgressBar::suspend`]), so the bar is redrawn below
//! them instead of being torn apart by them.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use indicatif::ProgressBar;

/// Where log lines go: stderr (or, in tests, any sink), around the bar attached, if any.
#[derive(Clone)]
pub struct BarLog {
    bar: Arc<Mutex<Option<ProgressBar>>>,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Default for BarLog {
    fn default() -> Self {
        BarLog::to(Box::new(std::io::stderr()))
    }
}

/// A lock that a panic elsewhere left poisoned still guards what it guarded: a log line.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl BarLog {
    /// Lines to `out`.
    pub fn to(out: Box<dyn Write + Send>) -> BarLog {
        BarLog {
            bar: Arc::new(Mutex::new(None)),
            out: Arc::new(Mutex::new(out)),
        }
    }

    /// Write lines around `bar` from now on.
    pub fn attach(&self, bar: &ProgressBar) {
        *lock(&self.bar) = Some(bar.clone());
    }

    /// Write lines straight out again (the bar is finished).
    pub fn detach(&self) {
        *lock(&self.bar) = None;
    }

    fn emit(&self, line: &[u8]) {
        let bar = lock(&self.bar).clone();
        let write = || {
            let mut out = lock(&self.out);
            // A log line that cannot be written has nowhere else to go.
            let _ = out.write_all(line).and_then(|()| out.flush());
        };
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

/// One log event being formatted; written out whole when dropped.
pub struct Line {
    log: BarLog,
    buffer: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            self.log.emit(&self.buffer);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BarLog {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            log: self.clone(),
            buffer: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter as _;

    /// A sink tests can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_is_written_whole_while_the_bar_is_suspended() {
        let sink = Shared::default();
        let log = BarLog::to(Box::new(sink.clone()));
        let bar = ProgressBar::hidden();
        log.attach(&bar);
        {
            let mut line = log.make_writer();
            line.write_all(b"WARN first half, ").expect("write");
            // Nothing is out until the line is complete.
            assert!(lock(&sink.0).is_empty());
            line.write_all(b"second half\n").expect("write");
        }
        assert_eq!(&lock(&sink.0)[..], b"WARN first half, second half\n");
        log.detach();
        log.make_writer().write_all(b"after\n").expect("write");
        assert!(lock(&sink.0).ends_with(b"after\n"));
    }

    #[test]
    fn log_lines_from_many_threads_never_interleave() {
        let sink = Shared::default();
        let log = BarLog::to(Box::new(sink.clone()));
        let bar = ProgressBar::hidden();
        log.attach(&bar);
        let lines: Vec<_> = (0..50)
            .map(|i| {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut line = log.make_writer();
                    for part in [format!("line {i} "), "continues\n".to_owned()] {
                        line.write_all(part.as_bytes()).expect("write");
                    }
                })
            })
            .collect();
        for handle in lines {
            handle.join().expect("thread");
        }
        let text = String::from_utf8(lock(&sink.0).clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 50);
        assert!(
            text.lines()
                .all(|l| l.starts_with("line ") && l.ends_with(" continues"))
        );
    }
}
