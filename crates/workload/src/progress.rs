//! Progress on a long run, for people: drawn on stderr only when it is a
//! terminal, so logs, pipes and CI see nothing of it.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar counting to `total` (a spinner when the total is not known), or
/// nothing at all when `shown` is false.
pub(crate) fn bar(shown: bool, total: Option<usize>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(total) => {
            ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr_with_hz(4))
        }
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4)),
    };
    if !shown {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = if total.is_some() {
        "  {prefix} [{bar:30}] {pos}/{len} {msg}"
    } else {
        "  {prefix} {spinner} {pos} {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_owned());
    bar
}
