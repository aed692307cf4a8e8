//! The domain crate of Bobby and Gandalf: environments and leases, persistence, the Slack adapters
//! and the HTTP plumbing both bots serve. No binary lives here; `bobby/` and `gandalf/` are thin
//! shells around it (SPEC §2).
//!
//! # Where to look
//!
//! | module | what lives there |
//! |---|---|
//! | [`ids`] | every identifier as a type (`EnvName`, `SlackUserId`, `RepoName`, `PrNumber`, `CommitSha`, `Holder`), parsed once, encoded and decoded by sqlx |
//! | [`refusal`] | the one way a handler refuses: the user's fault (a message) or ours (logged, apologised for); `Answer` |
//! | [`envs`] | environments, leases, waitlists, preservation: the rules as Postgres transactions (`envs::store`) |
//! | [`queue`] | Gandalf's queue items as both bots read them (Gandalf's writes stay in `gandalf::store`) |
//! | [`resources`] | the resource map (`.gandalf/resources.toml`), the affected-set planner, `resources discover` (SPEC §6) |
//! | [`steps`] | running a pipeline step: its own process group, timeout, captured output, leftovers killed after a crash; `steps::env`: what a step can see |
//! | [`copies`] | the `checkout` key and the working copies a run's steps get, from it |
//! | [`working_copy`] | one bare mirror per repository and a checkout per run, so steps see exactly the commit they concern; complete change lists |
//! | [`slack`] | request signatures, the reply shape, mrkdwn, the Web API client and the outbox (messages written in the change's transaction) |
//! | [`github`] | GitHub's REST API through octocrab: domain-named calls, our retry policy |
//! | [`control`] | the control center pages and the cctray feed, read from the shared database |
//! | [`http`] | what both HTTP servers share: errors, body limits, request ids, `/healthz`, `/readyz`, `/metrics`, graceful serving |
//! | [`db`] | the pool, the migrations, leadership of background workers |
//! | [`fence`] | leases with epochs for work that must happen once (Nightly, deploys): acquire, renew, fenced writes |
//! | [`settings`] | the TOML file and the process environment (the only module that reads `std::env`) |
//! | [`clock`], [`schedule`], [`duration`] | time, injected; wall-clock arithmetic in the configured zone; the one duration grammar |
//! | [`people`] | `[[people]]`: one person's Slack id, GitHub login and email |
//! | [`running`], [`cli`] | a started bot and its tasks; the process shell both binaries share |
//!
//! Decisions, wording and sending stay apart: a store function decides inside the caller's
//! transaction, the bot's `messages` module words the outcome, and the outbox sends it after the
//! commit. `docs/architecture.md` draws the crates, the tables each owns and the path of a Slack
//! command and of a webhook through the code.

pub mod cli;
pub mod clock;
pub mod control;
pub mod copies;
pub mod db;
pub mod duration;
pub mod envs;
pub mod fence;
pub mod github;
pub mod http;
pub mod ids;
pub mod people;
pub mod queue;
pub mod refusal;
pub mod resources;
pub mod running;
pub mod schedule;
pub mod settings;
pub mod slack;
pub mod steps;
pub mod working_copy;
