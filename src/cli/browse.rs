//! `claw browse`: one page in headless Chromium from the command line (the seed's shapes):
//! open, screenshot, extract, table, js, and the persistent profiles.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::{CliError, CliResult, Ctx};
use crate::audit::{self, Action as AuditAction};
use crate::browser::actions::{self, Extract, Shot};
use crate::browser::{self, DEFAULT_PROFILE, DEFAULT_VIEWPORT, Settings, manager::Options};

/// How long one `claw browse` command may take.
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Subcommand)]
pub(super) enum BrowseCommand {
    /// Load a page and print its title and final URL.
    Open {
        /// The page (http or https unless `browser.allow_schemes` allows more).
        url: String,
        #[command(flatten)]
        opts: PageOpts,
        /// Print JSON (`{url, title}`).
        #[arg(long)]
        json: bool,
    },
    /// Save a PNG of the page (or of one element).
    Screenshot {
        /// The page.
        url: String,
        /// Only this element (a CSS selector).
        #[arg(short = 's', long)]
        selector: Option<String>,
        /// The file to write.
        #[arg(short = 'o', long, default_value = "screenshot.png")]
        output: PathBuf,
        /// The whole page, not just the viewport.
        #[arg(long)]
        full_page: bool,
        #[command(flatten)]
        opts: PageOpts,
    },
    /// Print the text of the first element matching a selector (default: the whole body).
    Extract {
        /// The page.
        url: String,
        /// A CSS selector.
        #[arg(short = 's', long, default_value = "body")]
        selector: String,
        /// Print JSON (the text as a JSON string).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: PageOpts,
    },
    /// Print an HTML table as rows (JSON objects keyed by its header cells).
    Table {
        /// The page.
        url: String,
        /// A CSS selector of the table.
        #[arg(short = 's', long, default_value = "table")]
        selector: String,
        /// Print the rows as one JSON array instead of a text table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: PageOpts,
    },
    /// Run JavaScript in the page and print its result as JSON.
    Js {
        /// The page.
        url: String,
        /// An expression, or a function that is called (`() => document.title`).
        script: String,
        #[command(flatten)]
        opts: PageOpts,
    },
    /// The persistent profiles (<data>/browser/profiles): list, or `profiles delete NAME`.
    Profiles {
        #[command(subcommand)]
        cmd: Option<ProfilesCommand>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum ProfilesCommand {
    /// Delete a profile (its cookies, storage and cache); refused while a browser uses it.
    Delete {
        /// The profile's name.
        name: String,
    },
}

/// What every page command takes.
#[derive(Debug, Args)]
pub(super) struct PageOpts {
    /// The persistent profile to use (cookies and storage are kept between commands).
    #[arg(long, default_value = DEFAULT_PROFILE)]
    profile: String,
    /// Show the browser window (needs a display).
    #[arg(long)]
    headed: bool,
}

pub(super) fn run(ctx: &Ctx, cmd: BrowseCommand) -> CliResult {
    match cmd {
        BrowseCommand::Profiles { cmd: None, json } => list_profiles(ctx, json),
        BrowseCommand::Profiles {
            cmd: Some(ProfilesCommand::Delete { name }),
            ..
        } => delete_profile(ctx, &name),
        BrowseCommand::Open { url, opts, json } => {
            on_page(ctx, &url, &opts, async move |page, _| {
                let url = page.url().await.ok().flatten().unwrap_or_default();
                let title = page.get_title().await.ok().flatten().unwrap_or_default();
                if json {
                    super::output::print_json(&serde_json::json!({"url": url, "title": title}));
                } else {
                    println!("{title}\n{url}");
                }
                Ok(())
            })
        }
        BrowseCommand::Screenshot {
            url,
            selector,
            output,
            full_page,
            opts,
        } => on_page(ctx, &url, &opts, async move |page, _| {
            let shot = match selector {
                Some(s) => {
                    actions::wait_element(page, &s, Instant::now() + actions::ELEMENT_WAIT).await?;
                    Shot::Element(s)
                }
                None if full_page => Shot::FullPage,
                None => Shot::Page,
            };
            let bytes = actions::screenshot(page, &shot).await?;
            crate::fsutil::write_atomic(&output, ".claw-screenshot", &bytes)
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            println!("{}", output.display());
            Ok(())
        }),
        BrowseCommand::Extract {
            url,
            selector,
            json,
            opts,
        } => on_page(ctx, &url, &opts, async move |page, _| {
            actions::wait_element(page, &selector, Instant::now() + actions::ELEMENT_WAIT).await?;
            let v = actions::extract(page, &selector, &Extract::Text, false).await?;
            if json {
                super::output::print_json(&v);
            } else {
                println!("{}", v.as_str().unwrap_or_default());
            }
            Ok(())
        }),
        BrowseCommand::Table {
            url,
            selector,
            json,
            opts,
        } => on_page(ctx, &url, &opts, async move |page, _| {
            actions::wait_element(page, &selector, Instant::now() + actions::ELEMENT_WAIT).await?;
            let rows = actions::table(page, &selector).await?;
            if json {
                super::output::print_json(&rows);
            } else {
                print!("{}", rows_table(&rows));
            }
            Ok(())
        }),
        BrowseCommand::Js { url, script, opts } => {
            on_page(ctx, &url, &opts, async move |page, _| {
                let v = actions::eval(page, &script).await?;
                super::output::print_json(&v);
                Ok(())
            })
        }
    }
}

/// Opens `url` in a tab and runs `f` on it, all within [`LIMIT`]; the browser is closed when
/// the command ends (`cli::run` closes every browser).
fn on_page<F>(ctx: &Ctx, url: &str, opts: &PageOpts, f: F) -> CliResult
where
    F: AsyncFnOnce(&chromiumoxide::Page, &Settings) -> Result<(), String>,
{
    let settings = Settings::load(&ctx.dirs.root).map_err(|e| CliError::usage(e.render()))?;
    settings.check_url(url).map_err(CliError::usage)?;
    browser::check_profile_name(&opts.profile).map_err(CliError::usage)?;
    browser::launch::find_chromium().map_err(CliError::internal)?;
    let rt = super::runtime()?;
    let manager = browser::shared(&ctx.dirs.home);
    let options = Options {
        profile: opts.profile.clone(),
        headed: opts.headed,
        viewport: DEFAULT_VIEWPORT,
    };
    let result = rt.block_on(browser::manager::on_page(
        &manager, &options, &settings, url, LIMIT, f,
    ));
    result.map_err(|e| CliError::failed_with(crate::redact::global().redact(&e).into_owned()))
}

/// Rows as a text table (objects by their keys, arrays by position).
fn rows_table(rows: &serde_json::Value) -> String {
    let Some(list) = rows.as_array() else {
        return String::new();
    };
    let cell = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    match list.first() {
        Some(serde_json::Value::Object(first)) => {
            let headers: Vec<&str> = first.keys().map(String::as_str).collect();
            let body: Vec<Vec<String>> = list
                .iter()
                .map(|r| {
                    headers
                        .iter()
                        .map(|h| r.get(h).map(cell).unwrap_or_default())
                        .collect()
                })
                .collect();
            super::output::table(&headers, &body)
        }
        Some(_) => list
            .iter()
            .map(|r| {
                let cells: Vec<String> = r
                    .as_array()
                    .map(|a| a.iter().map(cell).collect())
                    .unwrap_or_default();
                format!("{}\n", cells.join("\t"))
            })
            .collect(),
        None => String::new(),
    }
}

fn list_profiles(ctx: &Ctx, json: bool) -> CliResult {
    let list = browser::list_profiles(&ctx.dirs.home)
        .map_err(|e| CliError::internal(format!("cannot list the profiles: {e}")))?;
    if json {
        super::output::print_json(&serde_json::to_value(&list).unwrap_or_default());
        return Ok(());
    }
    if list.is_empty() {
        println!("no browser profiles yet (a browser step or `claw browse` creates `default`)");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                format!("{} KiB", p.size / 1024),
                if p.in_use { "in use" } else { "" }.to_owned(),
                p.path.display().to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        super::output::table(&["PROFILE", "SIZE", "", "PATH"], &rows)
    );
    Ok(())
}

fn delete_profile(ctx: &Ctx, name: &str) -> CliResult {
    let result = browser::delete_profile(&ctx.dirs.home, name);
    let outcome = if result.is_ok() { "ok" } else { "refused" };
    let event = audit::Event::new(
        &crate::config::env::cli_actor(),
        AuditAction::BrowserProfileDeleted,
        name,
        outcome,
        serde_json::json!({}),
    );
    let _ = audit::AuditLog::in_dir(&ctx.dirs.home).record(&event);
    result.map_err(CliError::usage)?;
    println!("deleted browser profile {name}");
    Ok(())
}
