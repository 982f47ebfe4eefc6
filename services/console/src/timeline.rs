//! One saga's history drawn as a picture: each step a bar from when it was
//! asked to when it was answered (or to now, while it waits), one row per
//! attempt, the compensations in another colour, the operator's actions as
//! marks, and the step's deadline as a dashed line.

use maud::{html, Markup};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use events::saga::{command, Step, StepStatus};

/// One attempt at a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub name: String,
    pub attempt: u32,
    /// Seconds from the saga's start.
    pub from: f64,
    /// `None` while unanswered.
    pub to: Option<f64>,
    /// How it ended; `None` while unanswered.
    pub outcome: Option<StepStatus>,
    pub compensation: bool,
}

/// Something done to the saga rather than by it (an operator's action).
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub name: String,
    pub at: f64,
    pub by: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub start: Option<OffsetDateTime>,
    pub bars: Vec<Bar>,
    pub marks: Vec<Mark>,
    /// Seconds from the start to the current step's deadline.
    pub deadline: Option<f64>,
    /// Seconds from the start to the right edge: the last thing drawn, or
    /// now for an unfinished saga.
    pub span: f64,
}

/// Whether a step undoes another.
pub fn is_compensation(name: &str) -> bool {
    matches!(
        name,
        command::REFUND_PAYMENT | command::RELEASE_STOCK | command::CANCEL_ORDER
    )
}

/// The service that answers a step.
pub fn participant(name: &str) -> &'static str {
    match name {
        command::RESERVE_STOCK | command::COMMIT_STOCK | command::RELEASE_STOCK => {
            "inventory-service"
        }
        command::CHARGE_PAYMENT | command::REFUND_PAYMENT => "payment-service",
        command::CONFIRM_ORDER | command::CANCEL_ORDER => "order-service",
        _ => "saga-orchestrator",
    }
}

fn is_step(name: &str) -> bool {
    matches!(
        name,
        command::RESERVE_STOCK
            | command::CHARGE_PAYMENT
            | command::COMMIT_STOCK
            | command::CONFIRM_ORDER
            | command::REFUND_PAYMENT
            | command::RELEASE_STOCK
            | command::CANCEL_ORDER
    )
}

pub fn parse_time(at: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(at, &Rfc3339).ok()
}

impl Timeline {
    /// The timeline of a history (oldest first), with the current step's
    /// `deadline`, seen at `now`.
    pub fn of(steps: &[Step], deadline: Option<&str>, finished: bool, now: OffsetDateTime) -> Self {
        let start = steps.iter().find_map(|s| parse_time(&s.at));
        let Some(t0) = start else {
            return Self {
                start: None,
                bars: Vec::new(),
                marks: Vec::new(),
                deadline: None,
                span: 0.0,
            };
        };
        let since = |t: OffsetDateTime| (t - t0).as_seconds_f64().max(0.0);
        let mut bars: Vec<Bar> = Vec::new();
        let mut marks = Vec::new();
        let mut latest = 0.0f64;
        for step in steps {
            let Some(at) = parse_time(&step.at).map(since) else {
                continue;
            };
            latest = latest.max(at);
            if !is_step(&step.name) {
                if step.name != command::FINISH {
                    marks.push(Mark {
                        name: step.name.clone(),
                        at,
                        by: step.by.clone(),
                    });
                }
                continue;
            }
            if step.status == StepStatus::Requested {
                // Asked again: an attempt still open ends here.
                if let Some(open) = bars
                    .iter_mut()
                    .rev()
                    .find(|b| b.name == step.name && b.to.is_none())
                {
                    open.to = Some(at);
                    open.outcome = Some(StepStatus::TimedOut);
                }
                let attempt = bars.iter().filter(|b| b.name == step.name).count() as u32 + 1;
                bars.push(Bar {
                    name: step.name.clone(),
                    attempt,
                    from: at,
                    to: None,
                    outcome: None,
                    compensation: is_compensation(&step.name),
                });
            } else if let Some(open) = bars
                .iter_mut()
                .rev()
                .find(|b| b.name == step.name && b.to.is_none())
            {
                open.to = Some(at);
                open.outcome = Some(step.status);
            } else {
                // An answer without its request in the history: a point.
                bars.push(Bar {
                    name: step.name.clone(),
                    attempt: 1,
                    from: at,
                    to: Some(at),
                    outcome: Some(step.status),
                    compensation: is_compensation(&step.name),
                });
            }
        }
        let deadline = deadline.and_then(parse_time).map(since);
        let mut span = latest;
        if !finished {
            span = span.max(since(now));
        }
        if let Some(deadline) = deadline {
            span = span.max(deadline);
        }
        Self {
            start,
            bars,
            marks,
            deadline,
            span,
        }
    }

    /// The picture, as inline SVG: described for screen readers, whose
    /// users have the same facts in the history table below it.
    pub fn svg(&self, finished: bool) -> Markup {
        const LABEL: f64 = 200.0;
        const WIDTH: f64 = 960.0;
        const ROW: f64 = 28.0;
        const TOP: f64 = 8.0;
        const AXIS: f64 = 34.0;
        let plot = WIDTH - LABEL - 16.0;
        let span = if self.span > 0.0 { self.span } else { 1.0 };
        let x = |t: f64| LABEL + t / span * plot;
        let rows = self.bars.len().max(1) as f64;
        let height = TOP + rows * ROW + AXIS;
        let bottom = TOP + rows * ROW;
        let description = format!(
            "{} attempts at steps over {}{}",
            self.bars.len(),
            duration(self.span),
            if finished { "" } else { ", still running" }
        );
        html! {
            svg class="timeline" viewBox=(format!("0 0 {WIDTH} {height}")) role="img"
                aria-label=(description) preserveAspectRatio="xMinYMin meet" {
                title { (description) }
                @for tick in 0..=4 {
                    @let t = span * f64::from(tick) / 4.0;
                    line class="grid" x1=(x(t)) x2=(x(t)) y1=(TOP) y2=(bottom) {}
                    text class="tick" x=(x(t)) y=(bottom + 18.0)
                        text-anchor=(if tick == 0 { "start" } else if tick == 4 { "end" } else { "middle" }) {
                        (if tick == 0 { "0".to_owned() } else { format!("+{}", duration(t)) })
                    }
                }
                @for (row, bar) in self.bars.iter().enumerate() {
                    @let y = TOP + row as f64 * ROW;
                    @let to = bar.to.unwrap_or(span);
                    @let class = format!("bar {} {}",
                        if bar.compensation { "compensation" } else { "forward" },
                        bar.outcome.map_or("open", status_name));
                    text class="label" x="0" y=(y + ROW * 0.65) {
                        (bar.name) @if bar.attempt > 1 { " #" (bar.attempt) }
                    }
                    rect class=(class) x=(x(bar.from)) y=(y + 5.0)
                        width=(((x(to) - x(bar.from)).max(3.0))) height=(ROW - 10.0) rx="3" {
                        title {
                            (bar.name) " attempt " (bar.attempt) ": "
                            (bar.outcome.map_or("waiting", status_name))
                            @if let Some(end) = bar.to { " after " (duration(end - bar.from)) }
                        }
                    }
                }
                @if let Some(deadline) = self.deadline {
                    line class="deadline" x1=(x(deadline)) x2=(x(deadline)) y1=(TOP) y2=(bottom) {
                        title { "deadline of the current step, +" (duration(deadline)) }
                    }
                }
                @for mark in &self.marks {
                    line class="mark" x1=(x(mark.at)) x2=(x(mark.at)) y1=(TOP) y2=(bottom) {
                        title {
                            (mark.name) " at +" (duration(mark.at))
                            @if let Some(by) = &mark.by { " by " (by) }
                        }
                    }
                    text class="mark-label" x=(x(mark.at) + 3.0) y=(bottom - 4.0) { (mark.name) }
                }
            }
        }
    }
}

pub fn status_name(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Requested => "requested",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::TimedOut => "timed_out",
        StepStatus::Abandoned => "abandoned",
    }
}

/// A duration for people: "0 ms", "12 ms", "1.3 s", "4 min 10 s".
pub fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{} ms", (seconds * 1000.0).round() as u64)
    } else if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else if seconds < 3600.0 {
        format!(
            "{} min {} s",
            (seconds / 60.0) as u64,
            (seconds % 60.0) as u64
        )
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, status: StepStatus, ms: u64) -> Step {
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
        Step::new(name, status, &at.format(&Rfc3339).unwrap())
    }

    fn at(ms: u64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64)
    }

    #[test]
    fn attempts_compensations_and_marks_are_told_apart() {
        use StepStatus::*;
        let mut abort = step("abort", Succeeded, 2500);
        abort.by = Some("operator".to_owned());
        let steps = [
            step("reserve_stock", Requested, 0),
            step("reserve_stock", Succeeded, 20),
            step("charge_payment", Requested, 20),
            step("charge_payment", TimedOut, 1020),
            step("charge_payment", Requested, 1020),
            abort,
            step("charge_payment", Abandoned, 2500),
            step("refund_payment", Requested, 2500),
            step("refund_payment", Succeeded, 2540),
            step("release_stock", Requested, 2540),
        ];
        let deadline = at(12_540).format(&Rfc3339).unwrap();
        let timeline = Timeline::of(&steps, Some(&deadline), false, at(3000));
        let bars: Vec<_> = timeline
            .bars
            .iter()
            .map(|b| (b.name.as_str(), b.attempt, b.outcome, b.compensation))
            .collect();
        assert_eq!(
            bars,
            [
                ("reserve_stock", 1, Some(Succeeded), false),
                ("charge_payment", 1, Some(TimedOut), false),
                ("charge_payment", 2, Some(Abandoned), false),
                ("refund_payment", 1, Some(Succeeded), true),
                ("release_stock", 1, None, true),
            ]
        );
        assert_eq!(timeline.bars[1].to, Some(1.02));
        assert_eq!(timeline.marks.len(), 1);
        assert_eq!(timeline.marks[0].by.as_deref(), Some("operator"));
        assert_eq!(timeline.deadline, Some(12.54));
        assert_eq!(timeline.span, 12.54, "drawn up to the deadline");
        let svg = timeline.svg(false).into_string();
        assert_eq!(svg.matches("<rect").count(), 5);
        assert!(svg.contains("class=\"bar compensation open\""), "{svg}");
        assert!(svg.contains("class=\"deadline\""));
    }

    #[test]
    fn a_step_asked_again_without_an_answer_ends_its_first_attempt() {
        use StepStatus::*;
        let steps = [
            step("reserve_stock", Requested, 0),
            step("reserve_stock", Requested, 10_000),
        ];
        let timeline = Timeline::of(&steps, None, false, at(10_500));
        assert_eq!(timeline.bars[0].outcome, Some(TimedOut));
        assert_eq!(timeline.bars[1].attempt, 2);
        assert_eq!(timeline.span, 10.5, "an unfinished saga runs to now");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(0.0123), "12 ms");
        assert_eq!(duration(1.25), "1.2 s");
        assert_eq!(duration(250.0), "4 min 10 s");
    }
}
