//! Colour on a terminal: green and red statuses, yellow waits, dim secondary text. `--color
//! auto|always|never`; with `auto` (the default), only on a terminal, and never when `NO_COLOR`
//! is set to anything but the empty string (no-color.org) or `TERM=dumb`.

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use anstyle::{AnsiColor, Style};

/// `--color`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

static CHOICE: OnceLock<ColorChoice> = OnceLock::new();

/// Sets the choice for the process (the first call wins).
pub(crate) fn set(choice: ColorChoice) {
    let _ = CHOICE.set(choice);
}

fn on(is_terminal: bool) -> bool {
    match CHOICE.get().copied().unwrap_or_default() {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal
                && crate::config::env::var("NO_COLOR").is_none_or(|v| v.is_empty())
                && crate::config::env::var("TERM").is_none_or(|t| t != "dumb")
        }
    }
}

/// Whether what goes to stdout is coloured.
pub(crate) fn stdout() -> bool {
    on(std::io::stdout().is_terminal())
}

/// Whether what goes to stderr is coloured.
pub(crate) fn stderr() -> bool {
    on(std::io::stderr().is_terminal())
}

/// What a piece of text means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    Good,
    Bad,
    Warn,
    Dim,
}

impl Tone {
    fn style(self) -> Style {
        match self {
            Self::Good => Style::new().fg_color(Some(AnsiColor::Green.into())),
            Self::Bad => Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
            Self::Warn => Style::new().fg_color(Some(AnsiColor::Yellow.into())),
            Self::Dim => Style::new().dimmed(),
        }
    }

    /// The tone of a run's or step's status word.
    pub(crate) fn of_status(status: &str) -> Option<Self> {
        match status {
            "succeeded" | "ok" | "yes" => Some(Self::Good),
            "failed" | "cancelled" | "!!" => Some(Self::Bad),
            "waiting" | "interrupted" | "queued" | "running" => Some(Self::Warn),
            "skipped" | "pending" | "-" => Some(Self::Dim),
            _ => None,
        }
    }
}

/// `text` in `tone` when `on`.
pub(crate) fn paint(on: bool, tone: Tone, text: &str) -> String {
    if !on || text.is_empty() {
        return text.to_owned();
    }
    let style = tone.style();
    format!("{}{text}{}", style.render(), style.render_reset())
}

/// A status word painted for stdout (a table cell).
pub(crate) fn status(text: &str) -> String {
    match Tone::of_status(text) {
        Some(tone) => paint(stdout(), tone, text),
        None => text.to_owned(),
    }
}

/// The width a terminal shows: characters outside escape sequences.
pub(crate) fn visible_width(text: &str) -> usize {
    let mut n = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn painted_text_keeps_its_visible_width() {
        let p = paint(true, Tone::Bad, "failed");
        assert_ne!(p, "failed");
        assert_eq!(visible_width(&p), 6);
        assert_eq!(paint(false, Tone::Bad, "failed"), "failed");
        assert_eq!(visible_width("plain"), 5);
    }
}
