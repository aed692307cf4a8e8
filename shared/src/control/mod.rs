//! The control center (SPEC §7): one page for every environment, queue and run, served by both
//! bots from here, and the cctray feed that build monitors on the office wall read.
//!
//! | path | what |
//! |---|---|
//! | `GET /` | environments, the queues with positions and ETAs, recent merges and failures, GitHub deliveries set aside, recent Nightly runs |
//! | `GET /queue/{owner}/{repo}/pulls/{n}` | a PR's latest verification (`?item=<id>` for an earlier one): steps, durations, logs |
//! | `GET /nightly/runs/{id}` | a Nightly run: every environment, step and attempt with its output |
//! | `GET /deploys/{id}` | a `/bobby deploy`: its plan, steps, durations and logs |
//! | `GET /logs/queue/{step}`, `GET /logs/nightly/{attempt}`, `GET /logs/deploy/{step}` | one step's whole log, paged (`?page=<n>`, default the last) |
//! | `GET /cctray.xml` | one `Project` per environment (Nightly) and per queue (last verification) |
//!
//! Everything is read from the database both bots share ([`read`]), so each bot shows the other's
//! work too. Pages are rendered on the server with askama templates (`shared/templates/control/`),
//! which escape every value: lease reasons, PR titles and step output are user-supplied text. They
//! refresh themselves with `<meta http-equiv="refresh">` while something can change, need no
//! JavaScript, and follow the build-monitor colours ([`view::Tone`]) in light and dark.

pub mod cctray;
pub mod read;
pub mod view;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use crate::http::About;
use crate::refusal::{Handled, Refusal};
use view::{LogPage, Times, Tone};

#[derive(Clone)]
struct Control {
    pool: PgPool,
    about: About,
}

impl Control {
    fn times(&self) -> Times {
        Times {
            now: self.about.clock.now(),
            tz: self.about.timezone,
        }
    }

    fn chrome(&self, title: String, refresh: bool) -> Chrome {
        let times = self.times();
        Chrome {
            title,
            bot: self.about.bot,
            now: times.at(times.now),
            refresh,
        }
    }

    fn person(&self, who: &str) -> String {
        view::person(&self.about.people, who)
    }
}

/// The control center's routes; [`crate::http::ops_routes`] merges them with the health and
/// metrics endpoints.
pub fn routes(pool: PgPool, about: About) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/cctray.xml", get(cctray_feed))
        .route("/queue/{owner}/{repo}/pulls/{n}", get(pull))
        .route("/nightly/runs/{id}", get(nightly_run))
        .route("/logs/queue/{step}", get(queue_log))
        .route("/logs/nightly/{attempt}", get(nightly_log))
        .route("/deploys/{id}", get(deploy_page))
        .route("/logs/deploy/{step}", get(deploy_log))
        .with_state(Control { pool, about })
}

/// The user's half of a page's [`Refusal`]: what does not exist, shown as a 404 page. Our own
/// failures are `Refusal::Internal`: a 500 page, with the details in the log only. Both are pages,
/// since a person with a browser asked.
#[derive(Debug)]
struct Missing(String);

/// What every page handler returns.
type PageResult = Handled<Response, Missing>;

fn missing(message: String) -> Refusal<Missing> {
    Refusal::User(Missing(message))
}

#[derive(Template)]
#[template(path = "control/error.html")]
struct ErrorPage {
    message: String,
}

impl IntoResponse for Refusal<Missing> {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Refusal::User(Missing(m)) => (StatusCode::NOT_FOUND, m),
            Refusal::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "control center page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on our side; the details are in the server log.".to_string(),
                )
            }
        };
        let body = ErrorPage { message }.render().unwrap_or_else(|_| "error".to_string());
        (status, Html(body)).into_response()
    }
}

fn html(page: impl Template) -> PageResult {
    Ok(Html(page.render()?).into_response())
}

/// Parses a path's id, answering 404 (not 400) for junk: to a person it is a page that does not exist.
fn id_of<T: std::str::FromStr>(raw: &str, what: &str) -> Handled<T, Missing> {
    raw.parse()
        .map_err(|_| missing(format!("There is no {what} `{}`.", clip(raw))))
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// What every page has around its content.
struct Chrome {
    title: String,
    bot: &'static str,
    /// The instant the page shows, in the bot's timezone.
    now: String,
    /// Reload every 15 s: on the index, and on run pages while the run goes on.
    refresh: bool,
}

// --- the index -----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "control/index.html")]
struct IndexPage {
    chrome: Chrome,
    notes: Vec<String>,
    endpoints: &'static [&'static str],
    next_nightly: Option<String>,
    envs: Vec<EnvCard>,
    queues: Vec<QueueView>,
    recent: Vec<RecentRow>,
    runs: Vec<RunRow>,
    failed_deliveries: Vec<FailedDeliveryRow>,
}

/// A GitHub delivery Gandalf gave up on (SPEC §5.4): what it was about and why it failed.
struct FailedDeliveryRow {
    id: String,
    event: String,
    subject: String,
    link: Option<String>,
    attempts: i32,
    error: String,
    when: String,
    at: String,
    /// "command ran, reply not posted", when that is how far it got.
    note: String,
}

struct EnvCard {
    name: String,
    url: Option<String>,
    state: String,
    tone: Tone,
    holder: Option<String>,
    holder_id: String,
    reason: String,
    since: String,
    expires: String,
    expires_at: String,
    preserved: Option<String>,
    waitlist: Vec<String>,
    last: Option<LastNightlyView>,
    fault: Option<FaultView>,
    deploy: Option<DeployView>,
    deployed: Vec<String>,
}

/// The latest `/bobby deploy` to an environment, on its card.
struct DeployView {
    text: String,
    tone: Tone,
    when: String,
    link: String,
}

struct LastNightlyView {
    text: String,
    tone: Tone,
    when: String,
    link: Option<String>,
}

struct FaultView {
    phase: String,
    step: String,
    exit: String,
    attempts: u32,
    tail: String,
}

struct QueueView {
    repo: String,
    anchor: String,
    paused: Option<String>,
    typical: Option<String>,
    items: Vec<QueueRow>,
}

struct QueueRow {
    position: usize,
    pr: crate::ids::PrNumber,
    title: String,
    link: String,
    state: String,
    tone: Tone,
    priority: String,
    queued_by: String,
    in_queue: String,
    eta: String,
    note: String,
}

struct RecentRow {
    repo: crate::ids::RepoName,
    pr: crate::ids::PrNumber,
    title: String,
    link: String,
    state: String,
    tone: Tone,
    queued_by: String,
    finished: String,
    took: String,
    reason: String,
}

struct RunRow {
    id: i64,
    phase: String,
    trigger: String,
    state: String,
    tone: Tone,
    when: String,
    took: String,
    counts: String,
}

fn pull_link(repo: impl std::fmt::Display, pr: impl std::fmt::Display) -> String {
    format!("/queue/{repo}/pulls/{pr}")
}

fn queue_anchor(repo: &str) -> String {
    format!("queue-{}", repo.replace('/', "-"))
}

fn priority_text(p: i32) -> String {
    match p {
        0 => String::new(),
        p @ (crate::queue::URGENT | 10 | -10) => crate::queue::priority_label(p),
        p => format!("p={p}"),
    }
}

async fn index(State(c): State<Control>) -> PageResult {
    let t = c.times();
    let mut conn = c.pool.acquire().await?;
    let envs = read::environments(&mut conn)
        .await?
        .into_iter()
        .map(|(e, extra)| env_card(&c, t, e, extra))
        .collect();
    let queues = queue_views(&c, &mut conn, t).await?;
    let recent = read::recent_outcomes(&mut conn, 15)
        .await?
        .into_iter()
        .map(|i| recent_row(&c, t, i))
        .collect();
    let runs = read::nightly_runs(&mut conn, 8)
        .await?
        .into_iter()
        .map(|r| run_row(t, r))
        .collect();
    let failed_deliveries = read::failed_deliveries(&mut conn, 20)
        .await?
        .into_iter()
        .map(|d| failed_delivery_row(t, d))
        .collect();
    let next_nightly = read::next_nightly(&mut conn)
        .await?
        .map(|(phase, at)| format!("Next Nightly: {phase} {} ({})", t.rel(at), t.at(at)));

    html(IndexPage {
        chrome: c.chrome("Control center".into(), true),
        notes: c.about.notes.clone(),
        endpoints: c.about.endpoints,
        next_nightly,
        envs,
        queues,
        recent,
        runs,
        failed_deliveries,
    })
}

fn failed_delivery_row(t: Times, d: read::FailedDelivery) -> FailedDeliveryRow {
    // `owner/repo#n` links to the PR's page when it was ever queued; otherwise a 404 page says so.
    let link = d
        .subject
        .as_deref()
        .and_then(|s| s.split_once('#'))
        .map(|(repo, n)| pull_link(repo, n));
    FailedDeliveryRow {
        subject: d.subject.unwrap_or_default(),
        link,
        attempts: d.attempts,
        error: d.last_error.unwrap_or_default(),
        when: t.rel(d.failed_at),
        at: t.at(d.failed_at),
        note: if d.executed {
            "its command ran; the reply could not be posted".into()
        } else {
            String::new()
        },
        id: d.delivery_id,
        event: d.event,
    }
}

/// One environment's card: state, lease, preservation, last Nightly, fault, deploys.
fn env_card(c: &Control, t: Times, e: crate::envs::Environment, extra: Option<read::EnvExtra>) -> EnvCard {
    let run_link = extra
        .as_ref()
        .and_then(|x| x.last_run_id)
        .map(|id| format!("/nightly/runs/{id}#{}", e.name));
    let lease = e.lease.as_ref();
    EnvCard {
        url: view::safe_link(&e.url),
        state: e.state.as_str().to_string(),
        tone: view::env_tone(e.state.as_str()),
        holder: lease.map(|l| c.person(&l.holder.to_string())),
        holder_id: lease.map(|l| l.holder.to_string()).unwrap_or_default(),
        reason: lease.map(|l| l.reason.to_string()).unwrap_or_default(),
        since: lease.map(|l| t.rel(l.since)).unwrap_or_default(),
        expires: lease.map(|l| t.rel(l.expires_at)).unwrap_or_default(),
        expires_at: lease.map(|l| t.at(l.expires_at)).unwrap_or_default(),
        preserved: e.preserved_until.filter(|u| *u > t.now).map(|u| {
            let by = e.preserved_by.as_ref().map(|b| c.person(b.as_str()));
            match by {
                Some(by) => format!("until {} by {by}", t.at(u)),
                None => format!("until {}", t.at(u)),
            }
        }),
        waitlist: e.waitlist.iter().map(|w| c.person(w.as_str())).collect(),
        last: e.last_nightly.as_ref().map(|n| LastNightlyView {
            text: format!("{} {}", n.phase, n.outcome),
            tone: view::outcome_tone(n.outcome.as_str()),
            when: t.rel(n.finished_at),
            link: run_link.clone(),
        }),
        deploy: e.deploy.as_ref().map(|d| DeployView {
            text: format!("{} {} ({})", d.state, d.reference, view::short_sha(&d.sha)),
            tone: view::step_tone(d.state.as_str()),
            when: t.rel(d.finished_at.unwrap_or(d.started_at)),
            link: format!("/deploys/{}", d.id),
        }),
        deployed: e
            .deployed
            .iter()
            .map(|(r, d)| format!("{r} {}", view::short_sha(&d.sha)))
            .collect(),
        fault: e.fault.as_ref().map(|f| FaultView {
            phase: f.phase.to_string(),
            step: f.step.clone(),
            exit: f
                .exit_code
                .map(|c| format!("exit {c}"))
                .unwrap_or_else(|| "no exit status".into()),
            attempts: f.attempts,
            // The last lines only: the card must fit a wall screen; the run page has the rest.
            tail: view::tail(&f.log_tail, 4),
        }),
        name: e.name.to_string(),
    }
}

/// Every repository's queue, with positions and ETAs.
async fn queue_views(c: &Control, conn: &mut sqlx::PgConnection, t: Times) -> Handled<Vec<QueueView>, Missing> {
    let mut queues = Vec::new();
    for q in read::queues(&mut *conn).await? {
        let items = read::active_items(&mut *conn, &q.repo).await?;
        let typical = read::typical_verification(&mut *conn, &q.repo).await?;
        queues.push(QueueView {
            anchor: queue_anchor(&q.repo),
            paused: q.paused.then(|| {
                let by = q.paused_by.as_deref().map(|b| format!(" (by {})", c.person(b)));
                format!("{}{}", q.paused_reason, by.unwrap_or_default())
            }),
            typical: typical.map(view::span),
            items: queue_rows(c, &items, typical, q.paused, t),
            repo: q.repo,
        });
    }
    Ok(queues)
}

/// A PR that recently left the queue: merged, rejected or dropped.
fn recent_row(c: &Control, t: Times, i: read::Item) -> RecentRow {
    RecentRow {
        link: pull_link(&i.repo, i.pr),
        tone: view::item_tone(i.state.as_str()),
        queued_by: c.person(&i.queued_by),
        finished: i.finished_at.map(|f| t.rel(f)).unwrap_or_default(),
        took: i
            .verify_started_at
            .map(|s| t.took(s, i.finished_at))
            .unwrap_or_default(),
        reason: i.outcome_reason.clone().unwrap_or_default(),
        state: i.state.as_str().to_string(),
        repo: i.repo,
        pr: i.pr,
        title: i.title,
    }
}

/// A recent Nightly run, with its counts.
fn run_row(t: Times, r: read::NightlyRun) -> RunRow {
    RunRow {
        tone: view::run_tone(&r.state, r.faulted),
        when: t.rel(r.started_at.unwrap_or(r.created_at)),
        took: r.started_at.map(|s| t.took(s, r.finished_at)).unwrap_or_default(),
        counts: format!("{} ok · {} faulted · {} skipped", r.ok, r.faulted, r.skipped),
        id: r.id,
        phase: r.phase,
        trigger: r.trigger,
        state: r.state,
    }
}

/// Positions, times in queue and ETAs. The verifying item (first, when there is one) is expected
/// to finish `typical` after it started; each queued item starts when the ones before it are done,
/// each taking `typical`. No history, no estimate: a guess would be worse than a dash.
fn queue_rows(
    c: &Control,
    items: &[read::Item],
    typical: Option<chrono::Duration>,
    paused: bool,
    t: Times,
) -> Vec<QueueRow> {
    let mut ahead = chrono::Duration::zero();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let verifying = item.state != crate::queue::ItemState::Queued;
            let eta = match typical {
                _ if paused && !verifying => "paused".to_string(),
                None => "—".to_string(),
                Some(typ) if verifying => {
                    let left = item.verify_started_at.map(|s| s + typ - t.now).unwrap_or(typ);
                    ahead = left.max(chrono::Duration::zero());
                    if left > chrono::Duration::zero() {
                        format!("done in ~{}", view::span(left))
                    } else {
                        "done any moment".to_string()
                    }
                }
                Some(typ) => {
                    let starts = ahead;
                    ahead += typ;
                    if starts > chrono::Duration::zero() {
                        format!("starts in ~{}", view::span(starts))
                    } else {
                        "starts next".to_string()
                    }
                }
            };
            QueueRow {
                position: i + 1,
                pr: item.pr,
                title: item.title.clone(),
                link: pull_link(&item.repo, item.pr),
                state: view::words(item.state.as_str()),
                tone: view::item_tone(item.state.as_str()),
                priority: priority_text(item.priority),
                queued_by: c.person(&item.queued_by),
                in_queue: t.took(item.enqueued_at, None),
                eta,
                note: item.note.clone().unwrap_or_default(),
            }
        })
        .collect()
}

// --- a PR's verification -------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "control/pull.html")]
struct PullPage {
    chrome: Chrome,
    repo: String,
    queue_link: String,
    pr: i32,
    title: String,
    author: String,
    state: String,
    tone: Tone,
    position: Option<usize>,
    priority: String,
    /// Its `test` passed only on a retry.
    flaky: bool,
    /// The repository's `required_checks` on its candidate: name, state, link.
    checks: Vec<(String, String, Option<String>)>,
    queued_by: String,
    enqueued: String,
    in_queue: String,
    verification: Option<String>,
    attempts: i32,
    head: String,
    candidate: Option<String>,
    landed: Option<String>,
    affected: Vec<String>,
    reason: Option<String>,
    note: Option<String>,
    steps: Vec<StepView>,
    inline_lines: usize,
    others: Vec<OtherItem>,
}

struct StepView {
    name: String,
    state: String,
    tone: Tone,
    exit: String,
    started: String,
    took: String,
    tail: String,
    lines: usize,
    log_link: String,
    open: bool,
}

impl StepView {
    /// A step as the run pages show it; `name` and `log_link` are the caller's to fill in.
    fn of(
        t: &Times,
        state: String,
        exit_code: Option<i32>,
        started_at: DateTime<Utc>,
        finished_at: Option<DateTime<Utc>>,
        log: &str,
    ) -> StepView {
        StepView {
            name: String::new(),
            tone: view::step_tone(&state),
            exit: exit_code.map(|c| c.to_string()).unwrap_or_default(),
            started: t.at(started_at),
            took: t.took(started_at, finished_at),
            tail: view::tail(log, view::INLINE_LINES),
            lines: log.lines().count(),
            log_link: String::new(),
            open: state == "failed",
            state,
        }
    }
}

/// `build api`, or `test` for a step of the whole change.
fn step_name(step: &str, resource: Option<&str>) -> String {
    match resource {
        Some(r) => format!("{step} {r}"),
        None => step.to_string(),
    }
}

struct OtherItem {
    link: String,
    state: String,
    tone: Tone,
    enqueued: String,
    current: bool,
}

#[derive(Deserialize)]
struct PullQuery {
    item: Option<String>,
}

async fn pull(
    State(c): State<Control>,
    Path((owner, repo, n)): Path<(String, String, String)>,
    Query(q): Query<PullQuery>,
) -> PageResult {
    let t = c.times();
    let repo = format!("{owner}/{repo}");
    let pr: i32 = id_of(&n, "pull request")?;
    let mut conn = c.pool.acquire().await?;
    let items = read::items_of_pull(&mut conn, &repo, pr).await?;
    let wanted: Option<i64> = q.item.as_deref().map(|i| id_of(i, "verification")).transpose()?;
    let item = match wanted {
        Some(id) => items.iter().find(|i| i.id == id),
        None => items.first(),
    }
    .ok_or_else(|| missing(format!("{}#{pr} has never been queued.", clip(&repo))))?;
    let finished = item.state.is_finished();
    let position = if finished {
        None
    } else {
        read::active_items(&mut conn, &repo)
            .await?
            .iter()
            .position(|i| i.id == item.id)
            .map(|p| p + 1)
    };
    // A verification that restarted (the base moved before landing) keeps the steps of each
    // attempt; the page shows the current attempt's.
    let checks = match &item.candidate_sha {
        Some(sha) => read::candidate_checks(&mut conn, &repo, sha.as_str())
            .await?
            .into_iter()
            .map(|c| {
                let state = c.conclusion.unwrap_or(c.status).replace('_', " ");
                // Only web links: a CI's `details_url` is not ours to trust with `javascript:`.
                let url = c.url.filter(|u| u.starts_with("https://") || u.starts_with("http://"));
                (c.name, state, url)
            })
            .collect(),
        None => vec![],
    };
    let all_steps = read::queue_steps(&mut conn, item.id).await?;
    // A batch member shows its batch's run, whose attempt count is its first member's.
    let last_attempt = all_steps.iter().map(|s| s.attempt).max().unwrap_or(1);
    let steps = all_steps
        .into_iter()
        .filter(|s| s.attempt == last_attempt)
        .map(|s| StepView {
            name: step_name(&s.name, s.resource.as_deref()),
            log_link: format!("/logs/queue/{}", s.id),
            ..StepView::of(&t, s.state, s.exit_code, s.started_at, s.finished_at, &s.log)
        })
        .collect();
    let others = items
        .iter()
        .map(|i| OtherItem {
            link: format!("{}?item={}", pull_link(&repo, pr), i.id),
            state: view::words(i.state.as_str()),
            tone: view::item_tone(i.state.as_str()),
            enqueued: t.at(i.enqueued_at),
            current: i.id == item.id,
        })
        .collect::<Vec<_>>();
    html(PullPage {
        chrome: c.chrome(format!("{repo}#{pr}"), !finished),
        queue_link: format!("/#{}", queue_anchor(&repo)),
        pr,
        title: item.title.clone(),
        author: item.author.clone(),
        state: view::words(item.state.as_str()),
        tone: view::item_tone(item.state.as_str()),
        position,
        priority: priority_text(item.priority),
        flaky: item.flaky,
        checks,
        queued_by: c.person(&item.queued_by),
        enqueued: t.at(item.enqueued_at),
        in_queue: t.took(item.enqueued_at, item.verify_started_at.or(item.finished_at)),
        verification: item.verify_started_at.map(|s| t.took(s, item.finished_at)),
        attempts: item.attempts,
        head: view::short_sha(item.head_sha.as_str()),
        candidate: item.candidate_sha.as_ref().map(|s| view::short_sha(s.as_str())),
        landed: item.landed_sha.as_ref().map(|s| view::short_sha(s.as_str())),
        affected: item.affected.0.clone(),
        reason: item.outcome_reason.clone(),
        note: item.note.clone(),
        steps,
        inline_lines: view::INLINE_LINES,
        others: if others.len() > 1 { others } else { Vec::new() },
        repo,
    })
}

// --- a Nightly run -------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "control/nightly_run.html")]
struct RunPage {
    chrome: Chrome,
    id: i64,
    phase: String,
    state: String,
    tone: Tone,
    trigger: String,
    requested_by: Option<String>,
    only_env: Option<String>,
    started: String,
    took: String,
    note: String,
    counts: String,
    text_link: String,
    envs: Vec<RunEnvView>,
    inline_lines: usize,
}

struct RunEnvView {
    name: String,
    state: String,
    tone: Tone,
    skip: Option<String>,
    took: String,
    steps: Vec<RunStepView>,
}

struct RunStepView {
    name: String,
    command: String,
    state: String,
    tone: Tone,
    attempts: i32,
    exit: String,
    ended: String,
    took: String,
    runs: Vec<AttemptView>,
}

struct AttemptView {
    attempt: i32,
    started: String,
    took: String,
    ended: String,
    backoff: String,
    tail: String,
    lines: usize,
    log_link: String,
    open: bool,
}

async fn nightly_run(State(c): State<Control>, Path(id): Path<String>) -> PageResult {
    let t = c.times();
    let not_found = || missing(format!("There is no Nightly run `{}`.", clip(&id)));
    let run_id: i64 = id.parse().map_err(|_| not_found())?;
    let mut conn = c.pool.acquire().await?;
    let run = read::nightly_run(&mut conn, run_id).await?.ok_or_else(not_found)?;
    let steps = read::run_steps(&mut conn, run_id).await?;
    let attempts = read::run_attempts(&mut conn, run_id).await?;
    let envs = read::run_envs(&mut conn, run_id)
        .await?
        .into_iter()
        .map(|e| {
            let steps = steps
                .iter()
                .filter(|s| s.environment == e.environment)
                .map(|s| {
                    let runs: Vec<AttemptView> = attempts
                        .iter()
                        .filter(|a| a.environment == s.environment && a.step_position == s.position)
                        .map(|a| AttemptView {
                            attempt: a.attempt,
                            started: t.at(a.started_at),
                            took: t.took(a.started_at, a.finished_at),
                            ended: a.ended.clone().unwrap_or_else(|| "running".into()),
                            backoff: a
                                .backoff_ms
                                .map(|ms| format!("after a {} backoff", view::span(chrono::Duration::milliseconds(ms))))
                                .unwrap_or_default(),
                            tail: view::tail(&a.output, view::INLINE_LINES),
                            lines: a.output.lines().count(),
                            log_link: format!("/logs/nightly/{}", a.id),
                            // Open what failed: a non-zero exit, or an end without one (timeout, signal).
                            open: a.exit_code.is_some_and(|c| c != 0) || (a.ended.is_some() && a.exit_code.is_none()),
                        })
                        .collect();
                    RunStepView {
                        name: s.name.clone(),
                        command: s.command.clone(),
                        state: s.state.clone(),
                        tone: view::step_tone(&s.state),
                        attempts: s.attempts,
                        exit: s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                        ended: s.ended.clone().unwrap_or_default(),
                        took: s.started_at.map(|st| t.took(st, s.finished_at)).unwrap_or_default(),
                        runs,
                    }
                })
                .collect();
            RunEnvView {
                tone: view::step_tone(&e.state),
                skip: e.skip_reason.as_ref().map(|r| match e.skip_until {
                    Some(u) => format!("{r} until {}", t.at(u)),
                    None => r.clone(),
                }),
                took: e.started_at.map(|s| t.took(s, e.finished_at)).unwrap_or_default(),
                state: e.state,
                name: e.environment,
                steps,
            }
        })
        .collect();
    let running = matches!(run.state.as_str(), "requested" | "running");
    html(RunPage {
        chrome: c.chrome(format!("Nightly {} #{}", run.phase, run.id), running),
        id: run.id,
        tone: view::run_tone(&run.state, run.faulted),
        requested_by: run.requested_by.as_deref().map(|r| c.person(r)),
        only_env: run.only_env.clone(),
        started: run.started_at.map(|s| t.at(s)).unwrap_or_else(|| "not yet".into()),
        took: run.started_at.map(|s| t.took(s, run.finished_at)).unwrap_or_default(),
        counts: format!("{} ok · {} faulted · {} skipped", run.ok, run.faulted, run.skipped),
        text_link: format!("/nightly/runs/{}/log.txt", run.id),
        phase: run.phase,
        state: run.state,
        trigger: run.trigger,
        note: run.note,
        envs,
        inline_lines: view::INLINE_LINES,
    })
}

// --- whole logs, paged ---------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "control/log.html")]
struct LogView {
    chrome: Chrome,
    heading: String,
    state: String,
    tone: Tone,
    back_link: String,
    back_text: String,
    base: String,
    log: LogPage,
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<String>,
}

impl PageQuery {
    /// The page asked for; junk means the default (the last page) rather than an error.
    fn page(&self) -> Option<usize> {
        self.page.as_deref().and_then(|p| p.parse().ok())
    }
}

async fn queue_log(State(c): State<Control>, Path(step): Path<String>, Query(q): Query<PageQuery>) -> PageResult {
    let id: i64 = id_of(&step, "step")?;
    let mut conn = c.pool.acquire().await?;
    let (s, item) = read::queue_step(&mut conn, id)
        .await?
        .ok_or_else(|| missing(format!("There is no step `{id}`.")))?;
    let name = step_name(&s.name, s.resource.as_deref());
    html(LogView {
        chrome: c.chrome(format!("{}#{} {name}", item.repo, item.pr), s.state == "running"),
        heading: format!("{}#{} · {name}", item.repo, item.pr),
        tone: view::step_tone(&s.state),
        state: s.state,
        back_link: format!("{}?item={}", pull_link(&item.repo, item.pr), item.id),
        back_text: format!("{}#{} {}", item.repo, item.pr, item.title),
        base: format!("/logs/queue/{id}"),
        log: LogPage::of(&s.log, q.page()),
    })
}

async fn nightly_log(State(c): State<Control>, Path(attempt): Path<String>, Query(q): Query<PageQuery>) -> PageResult {
    let id: i64 = id_of(&attempt, "attempt")?;
    let mut conn = c.pool.acquire().await?;
    let (a, step) = read::run_attempt(&mut conn, id)
        .await?
        .ok_or_else(|| missing(format!("There is no attempt `{id}`.")))?;
    let state = match (&a.ended, a.exit_code) {
        (None, _) => "running",
        (Some(_), Some(0)) => "ok",
        (Some(_), _) => "failed",
    };
    html(LogView {
        chrome: c.chrome(
            format!("{} {step} attempt {}", a.environment, a.attempt),
            a.ended.is_none(),
        ),
        heading: format!("{} · {step} · attempt {}", a.environment, a.attempt),
        state: state.to_string(),
        tone: view::step_tone(state),
        back_link: format!("/nightly/runs/{}#{}", a.run_id, a.environment),
        back_text: format!("Nightly run #{}", a.run_id),
        base: format!("/logs/nightly/{id}"),
        log: LogPage::of(&a.output, q.page()),
    })
}

// --- a deploy ------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "control/deploy.html")]
struct DeployPage {
    chrome: Chrome,
    env: String,
    reference: String,
    state: String,
    tone: Tone,
    outcome: Option<String>,
    by: String,
    sha: String,
    started: String,
    took: String,
    resources: Vec<String>,
    everything: bool,
    steps: Vec<StepView>,
    inline_lines: usize,
}

async fn deploy_page(State(c): State<Control>, Path(id): Path<String>) -> PageResult {
    let t = c.times();
    let id: i64 = id_of(&id, "deploy")?;
    let mut conn = c.pool.acquire().await?;
    let d = read::deploy(&mut conn, id)
        .await?
        .ok_or_else(|| missing(format!("There is no deploy `{id}`.")))?;
    let steps = read::deploy_steps(&mut conn, id)
        .await?
        .into_iter()
        .map(|s| StepView {
            name: step_name(&s.step, s.resource.as_deref()),
            log_link: format!("/logs/deploy/{}", s.id),
            ..StepView::of(&t, s.state, s.exit_code, s.started_at, s.finished_at, &s.log)
        })
        .collect();
    html(DeployPage {
        chrome: c.chrome(
            format!("deploy {} to {}", d.reference, d.environment),
            d.finished_at.is_none(),
        ),
        tone: view::step_tone(&d.state),
        state: d.state,
        outcome: d.outcome,
        by: c.person(&d.by_user),
        sha: view::short_sha(&d.sha),
        started: t.at(d.started_at),
        took: t.took(d.started_at, d.finished_at),
        resources: d.resources,
        everything: d.everything,
        steps,
        inline_lines: view::INLINE_LINES,
        env: d.environment,
        reference: d.reference,
    })
}

async fn deploy_log(State(c): State<Control>, Path(step): Path<String>, Query(q): Query<PageQuery>) -> PageResult {
    let id: i64 = id_of(&step, "step")?;
    let mut conn = c.pool.acquire().await?;
    let s = read::deploy_step(&mut conn, id)
        .await?
        .ok_or_else(|| missing(format!("There is no step `{id}`.")))?;
    let d = read::deploy(&mut conn, s.deploy_id)
        .await?
        .ok_or_else(|| missing(format!("There is no step `{id}`.")))?;
    let name = step_name(&s.step, s.resource.as_deref());
    html(LogView {
        chrome: c.chrome(format!("{} {name}", d.environment), s.state == "running"),
        heading: format!("deploy of {} to {} · {name}", d.reference, d.environment),
        tone: view::step_tone(&s.state),
        state: s.state,
        back_link: format!("/deploys/{}", d.id),
        back_text: format!("deploy of {} to {}", d.reference, d.environment),
        base: format!("/logs/deploy/{id}"),
        log: LogPage::of(&s.log, q.page()),
    })
}

// --- cctray ---------------------------------------------------------------------------------------

async fn cctray_feed(State(c): State<Control>) -> PageResult {
    let mut conn = c.pool.acquire().await?;
    let projects = cctray::projects(&mut conn, &c.about.public_url, c.about.clock.now()).await?;
    let body = cctray::Feed { projects }.render()?;
    Ok(([(header::CONTENT_TYPE, "application/xml; charset=utf-8")], body).into_response())
}
