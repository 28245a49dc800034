//! How long work shows its progress (training, evaluation, candidate generation, imports):
//! a bar when stderr is a terminal; otherwise `info` lines on the [`TARGET`] target, which
//! `logging::init` lets through by default when stderr is not a terminal. Lines for work
//! inside a phase (batches of an epoch, queries of an evaluation) come at most every
//! [`LINE_EVERY`], so a log file (a daemon, CI, `run > log`) shows the work moving without
//! filling up; milestones (each finished epoch) are always written. The model and engine code
//! only report numbers through callbacks; this module decides how they look.

use crate::graph::Triple;
use crate::model::{LinkPredictor, TrainEvent};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tracing target of progress lines.
pub const TARGET: &str = "hypograph::progress";

/// Least time between two lines about work inside a phase.
pub const LINE_EVERY: Duration = Duration::from_secs(30);

/// Where lines go: tracing, or a test's collector.
type Sink = Box<dyn FnMut(&str) + Send>;
type Clock = Box<dyn Fn() -> Instant + Send>;

enum Out {
    Bar(indicatif::ProgressBar),
    Lines(Sink),
}

/// Shows one piece of work's progress: a bar, or throttled lines.
pub struct Reporter {
    out: Out,
    every: Duration,
    clock: Clock,
    /// When the last line was written (or the reporter made).
    last_line: Instant,
}

impl Reporter {
    /// A bar when stderr is a terminal, throttled log lines otherwise.
    pub fn new() -> Self {
        if std::io::stderr().is_terminal() {
            Self::bar()
        } else {
            Self::lines()
        }
    }

    /// A bar on stderr (hidden by indicatif itself where stderr is no terminal).
    pub fn bar() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {msg} (eta {eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            out: Out::Bar(bar),
            every: LINE_EVERY,
            clock: Box::new(Instant::now),
            last_line: Instant::now(),
        }
    }

    /// For work in a few long steps with no count (an import): a spinner with the step's
    /// name on a terminal, throttled log lines otherwise.
    pub fn steps() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::lines();
        }
        let mut r = Self::bar();
        if let (Out::Bar(bar), Ok(style)) = (
            &mut r.out,
            indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})"),
        ) {
            bar.set_style(style);
        }
        r
    }

    /// `info` lines on [`TARGET`], whatever stderr is (the engine's work, in a daemon or a
    /// server as often as in a terminal).
    pub fn lines() -> Self {
        Self::to_sink(
            LINE_EVERY,
            Box::new(|line| tracing::info!(target: TARGET, "{line}")),
            Box::new(Instant::now),
        )
    }

    /// Lines into `sink`, at most every `every` within a phase, on `clock`'s time.
    pub fn to_sink(every: Duration, sink: Sink, clock: Clock) -> Self {
        let last_line = clock();
        Self {
            out: Out::Lines(sink),
            every,
            clock,
            last_line,
        }
    }

    /// Work moved to `pos` of `len` (`len` 0: unknown). A bar shows it at once; a line with
    /// `msg` is written only when `every` has passed since the last line.
    pub fn update(&mut self, pos: u64, len: u64, msg: impl FnOnce() -> String) {
        match &mut self.out {
            Out::Bar(bar) => {
                bar.set_length(len);
                bar.set_position(pos);
                bar.set_message(msg());
            }
            Out::Lines(sink) => {
                let now = (self.clock)();
                if now.saturating_duration_since(self.last_line) >= self.every {
                    self.last_line = now;
                    sink(&msg());
                }
            }
        }
    }

    /// A milestone: always a line (above the bar on a terminal, when the log level lets
    /// `info` through), and the bar's position and message.
    pub fn line(&mut self, pos: u64, len: u64, msg: &str) {
        match &mut self.out {
            Out::Bar(bar) => {
                bar.set_length(len);
                bar.set_position(pos);
                bar.set_message(msg.to_owned());
                if tracing::enabled!(target: TARGET, tracing::Level::INFO) {
                    bar.suspend(|| tracing::info!(target: TARGET, "{msg}"));
                }
            }
            Out::Lines(sink) => {
                self.last_line = (self.clock)();
                sink(msg);
            }
        }
    }

    /// Runs `f` (which writes to stderr) with the bar out of its way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.out {
            Out::Bar(bar) => bar.suspend(f),
            Out::Lines(_) => f(),
        }
    }

    /// Clears the bar (as dropping the reporter does, on an error's way out too).
    pub fn finish(self) {}
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Out::Bar(bar) = &self.out {
            bar.finish_and_clear();
        }
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new()
    }
}

/// A duration for people: `42s`, `3m05s`, `1h02m`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `done` of `total` things done in `seconds`: `1234/5000 queries (24%), 812 queries/s,
/// eta 5s` (no total or eta when `total` is 0).
pub fn counted(done: u64, total: u64, unit: &str, seconds: f64) -> String {
    let rate = done as f64 / seconds.max(1e-9);
    if total == 0 {
        return format!("{done} {unit}, {rate:.0} {unit}/s");
    }
    let eta = if done == 0 {
        "?".into()
    } else {
        duration(total.saturating_sub(done) as f64 / rate)
    };
    format!(
        "{done}/{total} {unit} ({:.0}%), {rate:.0} {unit}/s, eta {eta}",
        100.0 * done as f64 / total as f64
    )
}

/// Bar positions per epoch of [`TrainProgress`].
const TICKS: u64 = 1000;

/// Shows a training run's [`TrainEvent`]s: one line per epoch (loss, validation MRR when
/// computed, seconds) and, within long epochs, batches done, running loss, throughput and
/// the epoch's ETA.
pub struct TrainProgress {
    reporter: Reporter,
    label: String,
    members: usize,
    epochs: usize,
    last_mrr: Option<f64>,
}

impl TrainProgress {
    /// `label` names the model (`complex dim 200`); `members` of `epochs` epochs each.
    pub fn new(
        reporter: Reporter,
        label: impl Into<String>,
        members: usize,
        epochs: usize,
    ) -> Self {
        Self {
            reporter,
            label: label.into(),
            members: members.max(1),
            epochs: epochs.max(1),
            last_mrr: None,
        }
    }

    fn who(&self, member: usize, epoch: usize) -> String {
        let member = if self.members > 1 {
            format!(" member {}/{}", member + 1, self.members)
        } else {
            String::new()
        };
        format!("{}{member} epoch {epoch}/{}", self.label, self.epochs)
    }

    /// Bar position at `done` of an epoch's `TICKS`.
    fn pos(&self, member: usize, epoch: usize, done: u64) -> u64 {
        (member * self.epochs + epoch.saturating_sub(1)) as u64 * TICKS + done.min(TICKS)
    }

    pub fn event(&mut self, member: usize, event: &TrainEvent) {
        let len = (self.members * self.epochs) as u64 * TICKS;
        match event {
            TrainEvent::Batch(b) => {
                let pos = self.pos(
                    member,
                    b.epoch,
                    TICKS * b.done as u64 / b.batches.max(1) as u64,
                );
                let who = self.who(member, b.epoch);
                self.reporter.update(pos, len, || {
                    format!(
                        "{who}: batch {}/{}, loss {:.4}, {:.0} {}/s, epoch eta {}",
                        b.done,
                        b.batches,
                        b.loss,
                        b.per_second(),
                        b.unit,
                        duration(b.eta_seconds())
                    )
                });
            }
            TrainEvent::Validating { epoch } => {
                let pos = self.pos(member, *epoch, TICKS);
                let who = self.who(member, *epoch);
                self.reporter
                    .update(pos, len, || format!("{who}: ranking validation triples"));
            }
            TrainEvent::Epoch(s) => {
                if s.valid_mrr.is_some() {
                    self.last_mrr = s.valid_mrr;
                }
                let line = format!(
                    "{}: loss {:.4}{}, {:.1}s",
                    self.who(member, s.epoch),
                    s.loss,
                    s.valid_mrr
                        .map(|m| format!(", valid MRR {m:.4}"))
                        .unwrap_or_default(),
                    s.seconds
                );
                let pos = self.pos(member, s.epoch, TICKS);
                self.reporter.line(pos, len, &line);
            }
        }
    }

    /// The last validation MRR seen.
    pub fn last_mrr(&self) -> Option<f64> {
        self.last_mrr
    }

    pub fn finish(self) {
        self.reporter.finish();
    }
}

/// A [`LinkPredictor`] that reports the queries (and triples) it has scored of `total`, for
/// the progress of work that scores through one (`model::evaluate`).
pub struct Counted<'a, P: ?Sized> {
    inner: &'a P,
    state: Mutex<(Reporter, u64)>,
    what: String,
    unit: &'static str,
    total: u64,
    started: Instant,
}

impl<'a, P: LinkPredictor + ?Sized> Counted<'a, P> {
    pub fn new(
        inner: &'a P,
        reporter: Reporter,
        what: impl Into<String>,
        unit: &'static str,
        total: u64,
    ) -> Self {
        Self {
            inner,
            state: Mutex::new((reporter, 0)),
            what: what.into(),
            unit,
            total,
            started: Instant::now(),
        }
    }

    fn add(&self, n: usize) {
        if let Ok(mut guard) = self.state.lock() {
            let (reporter, done) = &mut *guard;
            *done += n as u64;
            let done = *done;
            let seconds = self.started.elapsed().as_secs_f64();
            reporter.update(done, self.total, || {
                format!(
                    "{}: {}",
                    self.what,
                    counted(done, self.total, self.unit, seconds)
                )
            });
        }
    }

    pub fn finish(self) {
        if let Ok((reporter, _)) = self.state.into_inner() {
            reporter.finish();
        }
    }
}

impl<P: LinkPredictor + ?Sized> LinkPredictor for Counted<'_, P> {
    fn num_entities(&self) -> usize {
        self.inner.num_entities()
    }
    fn triples(&self, triples: &[Triple]) -> Vec<f32> {
        let out = self.inner.triples(triples);
        self.add(triples.len());
        out
    }
    fn tails(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        let out = self.inner.tails(queries);
        self.add(queries.len());
        out
    }
    fn heads(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        let out = self.inner.heads(queries);
        self.add(queries.len());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BatchStats, EpochStats};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A reporter writing lines into a vector, on a clock the test moves (seconds).
    fn collecting(every: u64) -> (Reporter, Arc<Mutex<Vec<String>>>, Arc<AtomicU64>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let now = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let (l, n) = (lines.clone(), now.clone());
        let reporter = Reporter::to_sink(
            Duration::from_secs(every),
            Box::new(move |s| l.lock().expect("lines").push(s.to_owned())),
            Box::new(move || start + Duration::from_secs(n.load(Ordering::SeqCst))),
        );
        (reporter, lines, now)
    }

    fn batch(epoch: usize, done: usize) -> TrainEvent {
        TrainEvent::Batch(BatchStats {
            epoch,
            epochs: 2,
            done,
            batches: 100,
            examples: done * 512,
            unit: "triples",
            loss: 0.5,
            seconds: done as f64,
        })
    }

    fn epoch(epoch: usize, valid_mrr: Option<f64>) -> TrainEvent {
        TrainEvent::Epoch(EpochStats {
            epoch,
            loss: 0.25,
            valid_mrr,
            seconds: 100.0,
            train_seconds: 99.0,
        })
    }

    #[test]
    fn a_line_per_epoch_and_throttled_lines_within() {
        let (reporter, lines, now) = collecting(30);
        let mut p = TrainProgress::new(reporter, "complex dim 8", 1, 2);
        for t in [1, 10, 29] {
            now.store(t, Ordering::SeqCst);
            p.event(0, &batch(1, t as usize));
        }
        assert!(
            lines.lock().expect("lines").is_empty(),
            "nothing before 30 s"
        );
        now.store(31, Ordering::SeqCst);
        p.event(0, &batch(1, 31));
        now.store(40, Ordering::SeqCst);
        p.event(0, &batch(1, 40));
        now.store(100, Ordering::SeqCst);
        p.event(0, &epoch(1, None));
        // The epoch line restarts the wait: a batch 20 s later says nothing.
        now.store(120, Ordering::SeqCst);
        p.event(0, &batch(2, 20));
        now.store(200, Ordering::SeqCst);
        p.event(0, &epoch(2, Some(0.4321)));
        let lines = lines.lock().expect("lines").clone();
        assert_eq!(
            lines,
            [
                "complex dim 8 epoch 1/2: batch 31/100, loss 0.5000, 512 triples/s, epoch eta 1m09s",
                "complex dim 8 epoch 1/2: loss 0.2500, 100.0s",
                "complex dim 8 epoch 2/2: loss 0.2500, valid MRR 0.4321, 100.0s",
            ]
        );
    }

    #[test]
    fn zero_interval_writes_every_update_and_names_members() {
        let (reporter, lines, _) = collecting(0);
        let mut p = TrainProgress::new(reporter, "walks", 3, 2);
        p.event(1, &batch(1, 50));
        p.event(1, &TrainEvent::Validating { epoch: 1 });
        p.event(1, &epoch(1, Some(0.5)));
        let lines = lines.lock().expect("lines").clone();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("walks member 2/3 epoch 1/2: batch 50/100"));
        assert_eq!(
            lines[1],
            "walks member 2/3 epoch 1/2: ranking validation triples"
        );
        assert!(lines[2].contains("valid MRR 0.5000"));
        assert_eq!(p.last_mrr(), Some(0.5));
    }

    #[test]
    fn counted_scoring_reports_queries() {
        struct Flat;
        impl LinkPredictor for Flat {
            fn num_entities(&self) -> usize {
                3
            }
            fn triples(&self, t: &[Triple]) -> Vec<f32> {
                vec![0.0; t.len()]
            }
            fn tails(&self, q: &[(u32, u32)]) -> Vec<f32> {
                vec![0.0; q.len() * 3]
            }
            fn heads(&self, q: &[(u32, u32)]) -> Vec<f32> {
                vec![0.0; q.len() * 3]
            }
        }
        let (reporter, lines, _) = collecting(0);
        let c = Counted::new(&Flat, reporter, "evaluating", "queries", 4);
        let test = [Triple::new(0, 0, 1), Triple::new(1, 0, 2)];
        crate::model::evaluate(&c, &test, &crate::model::Known::default(), 1);
        let lines = lines.lock().expect("lines").clone();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[3].starts_with("evaluating: 4/4 queries (100%)"),
            "{lines:?}"
        );
    }

    #[test]
    fn durations_and_counts_read_well() {
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(3720.0), "1h02m");
        assert_eq!(duration(f64::INFINITY), "?");
        assert_eq!(
            counted(250, 1000, "pairs", 1.0),
            "250/1000 pairs (25%), 250 pairs/s, eta 3s"
        );
        assert_eq!(counted(10, 0, "lines", 2.0), "10 lines, 5 lines/s");
    }
}
