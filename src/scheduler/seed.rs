//! The seed's schedule syntax (its `cron_engine.py`), so that claw keeps `jobs.json` readable by
//! a seed installation sharing the data directory: the seed parses the schedule of every enabled
//! job when its daemon starts or `cron enable` runs, and a form it does not know raises there.
//!
//! The seed reads, after trimming and case-insensitively: `every <N><m|h|d>` (a space before the
//! unit allowed; no seconds, no compound values), `daily at H:MM` or `HH:MM`, and five crontab
//! fields each matching `[\d*/,-]+`, handed to APScheduler's `CronTrigger.from_crontab`, which
//! numbers weekdays from Monday = 0 (cron's 1).

use super::schedule::is_clock;

/// How a schedule claw accepts stands for the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedForm {
    /// The seed reads it as written, with the same meaning.
    Same,
    /// The seed reads this text with the same meaning.
    Equivalent(String),
    /// The seed cannot read it, or would read it with another meaning: why.
    None(String),
}

/// The seed's form of `schedule` (one claw accepts).
pub fn seed_form(schedule: &str) -> SeedForm {
    let text = schedule.trim();
    let lower = text.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("every") {
        return every(rest.trim(), text);
    }
    if lower.starts_with("daily at") || is_clock(&lower) {
        return SeedForm::Same;
    }
    if let Some(cron) = macro_text(&lower) {
        return match crontab(cron) {
            SeedForm::Same => SeedForm::Equivalent(cron.to_owned()),
            other => other,
        };
    }
    let fields: Vec<&str> = lower.split_whitespace().collect();
    match fields.len() {
        5 => crontab(&fields.join(" ")),
        6 if fields[0] == "0" => match crontab(&fields[1..].join(" ")) {
            SeedForm::Same => SeedForm::Equivalent(fields[1..].join(" ")),
            other => other,
        },
        6 => SeedForm::None("the seed's cron has no seconds field".into()),
        _ => SeedForm::None("the seed's cron does not know this form".into()),
    }
}

/// Whether the seed's parser accepts `schedule` at all (whatever it makes of it).
pub fn seed_parses(schedule: &str) -> bool {
    let lower = schedule.trim().to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("every") {
        return seed_interval(rest);
    }
    if let Some(rest) = lower.strip_prefix("daily at") {
        return is_clock(rest.trim());
    }
    if is_clock(&lower) {
        return true;
    }
    let fields: Vec<&str> = lower.split_whitespace().collect();
    fields.len() == 5
        && fields.iter().all(|f| {
            f.bytes()
                .all(|b| b.is_ascii_digit() || b"*/,-".contains(&b))
        })
}

fn macro_text(lower: &str) -> Option<&'static str> {
    Some(match lower {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return None,
    })
}

/// `every …`: the seed's interval has one number and one unit of minutes, hours or days.
/// What follows `every` is the seed's interval: one number and one unit of m, h or d (spaces
/// allowed between them).
fn seed_interval(rest: &str) -> bool {
    let compact: String = rest.split_whitespace().collect();
    compact.len() > 1
        && compact[..compact.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_digit())
        && compact.ends_with(['m', 'h', 'd'])
}

fn every(rest: &str, text: &str) -> SeedForm {
    if seed_interval(rest) {
        return SeedForm::Same;
    }
    let compact: String = rest.split_whitespace().collect();
    let Ok(d) = crate::time::duration::parse(&compact) else {
        return SeedForm::None(format!("the seed's cron does not read `{text}`"));
    };
    let secs = d.as_secs();
    if secs == 0 || secs % 60 != 0 || d.subsec_nanos() != 0 {
        return SeedForm::None("the seed's `every` has no seconds".into());
    }
    let minutes = secs / 60;
    let form = if minutes % 1440 == 0 {
        format!("every {}d", minutes / 1440)
    } else if minutes % 60 == 0 {
        format!("every {}h", minutes / 60)
    } else {
        format!("every {minutes}m")
    };
    SeedForm::Equivalent(form)
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Five crontab fields (lower case).
fn crontab(text: &str) -> SeedForm {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != 5 {
        return SeedForm::None("the seed's cron does not know this form".into());
    }
    if fields[4] != "*" {
        return SeedForm::None(
            "the seed's cron (APScheduler) numbers weekdays from Monday = 0, so a day-of-week field would fire on another day there"
                .into(),
        );
    }
    let mut out: Vec<String> = Vec::with_capacity(5);
    for (i, f) in fields.iter().enumerate() {
        let mut f = (*f).to_owned();
        if i == 3 {
            for (n, name) in MONTHS.iter().enumerate() {
                f = f.replace(name, &(n + 1).to_string());
            }
        }
        if !f
            .bytes()
            .all(|b| b.is_ascii_digit() || b"*/,-".contains(&b))
        {
            return SeedForm::None(format!(
                "the seed's cron reads digits, `*`, `/`, `,` and `-` only, not `{f}`"
            ));
        }
        out.push(f);
    }
    let joined = out.join(" ");
    if joined == text {
        SeedForm::Same
    } else {
        SeedForm::Equivalent(joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(s: &str) -> String {
        match seed_form(s) {
            SeedForm::Equivalent(t) => t,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn forms_the_seed_reads_as_they_are() {
        for s in [
            "every 5m",
            "every 5 m",
            "EVERY 2h",
            "every 1d",
            "daily at 9:30",
            "09:30",
            "*/15 9-17 * * *",
            "0 3 1,15 * *",
        ] {
            assert_eq!(seed_form(s), SeedForm::Same, "{s}");
        }
    }

    #[test]
    fn claw_forms_with_a_seed_equivalent() {
        assert_eq!(eq("every 2h30m"), "every 150m");
        assert_eq!(eq("every 120s"), "every 2m");
        assert_eq!(eq("every 1d12h"), "every 36h");
        assert_eq!(eq("@hourly"), "0 * * * *");
        assert_eq!(eq("@daily"), "0 0 * * *");
        assert_eq!(eq("0 */5 * * * *"), "*/5 * * * *");
        assert_eq!(eq("0 0 1 JAN,jul *"), "0 0 1 1,7 *");
    }

    #[test]
    fn what_the_seed_parses() {
        for s in [
            "every 5m",
            "every 5 m",
            "daily at 9:30",
            "09:30",
            "0 9 * * 1-5",
        ] {
            assert!(seed_parses(s), "{s}");
        }
        for s in [
            "every 2h30m",
            "every 30s",
            "@hourly",
            "0 9 * * MON",
            "0 0 0 * * *",
            "0 0 L * *",
        ] {
            assert!(!seed_parses(s), "{s}");
        }
    }

    #[test]
    fn forms_the_seed_cannot_read_or_would_read_otherwise() {
        for s in [
            "every 90s",
            "every 30s",
            "30 */5 * * * *",
            "0 9 * * MON",
            "0 9 * * 1-5",
            "@weekly",
            "0 0 L * *",
        ] {
            assert!(
                matches!(seed_form(s), SeedForm::None(_)),
                "{s}: {:?}",
                seed_form(s)
            );
        }
    }
}
