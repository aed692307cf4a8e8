//! Where the bots' steps get their code (SPEC §5.8): Gandalf's verification steps run in a working
//! copy of the candidate (`revert` in one of the base tip), a deploy's steps in one of the deployed
//! commit, Nightly's create steps in one of `base`'s tip.
//!
//! [`CheckoutConfig`] is the `checkout` key both bots read. [`Copies`] ties
//! [`crate::working_copy`] (one bare mirror per repository under `state_dir`, a copy per run) to
//! it: which remote (`checkout = true`: the `clone_url` GitHub
//! reports; `{ clone_url = … }`: the one named) and which token. The token reaches git only through
//! [`Remote::token`], for the one git command that needs it: never a copy's `.git/config`, never a
//! step. An App installation token is asked for each time (octocrab reuses it while it is fresh),
//! so a long-lived Bobby never fetches with an expired one.
//!
//! Every failure here is "the copy cannot be had" (no git, no route, GitHub down, a full disk),
//! reported as one sentence for people: the caller ends the deploy `failed`, or faults the Nightly
//! environment, with it.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use crate::github::Github;
use crate::ids::{CommitSha, RepoName};
use crate::steps::env::StepUser;
use crate::working_copy::{Mirrors, Remote, WorkingCopy};

/// `checkout` of Gandalf's `[[repos]]` and Bobby's `[deploy]` and `[nightly]` (SPEC §5.8): where the steps' working copy comes from.
/// The key left out is `None` in the config structs: steps stay in the config file's directory,
/// and the bot warns that they do not see the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutConfig {
    /// `checkout = false`: steps run in the config file's directory, on purpose (no warning).
    Off,
    /// `checkout = true`: from the `clone_url` GitHub reports for the repository.
    GitHub,
    /// `checkout = { clone_url = "…" }`: another remote (a mirror, a proxy, a `file://` URL or a
    /// path; a relative path is resolved from the config file's directory when the config is read).
    CloneUrl(String),
}

impl CheckoutConfig {
    pub fn is_on(&self) -> bool {
        !matches!(self, CheckoutConfig::Off)
    }
}

impl<'de> Deserialize<'de> for CheckoutConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = CheckoutConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or { clone_url = \"…\" }")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<CheckoutConfig, E> {
                Ok(if v { CheckoutConfig::GitHub } else { CheckoutConfig::Off })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<CheckoutConfig, A::Error> {
                let mut url: Option<String> = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "clone_url" {
                        return Err(serde::de::Error::unknown_field(&key, &["clone_url"]));
                    }
                    url = Some(map.next_value()?);
                }
                match url {
                    Some(u) if !u.trim().is_empty() => Ok(CheckoutConfig::CloneUrl(u.trim().to_string())),
                    _ => Err(serde::de::Error::custom(
                        "checkout = { … } needs a clone_url (a URL git can fetch from, or a path)",
                    )),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A relative path in `clone_url` means the config file's directory, like every other path there;
/// URLs (`https://`, `file://`, `ssh://`, scp-like `git@host:…`) stay as written.
pub fn resolve_clone_url(checkout: &mut Option<CheckoutConfig>, base_dir: &Path) {
    if let Some(CheckoutConfig::CloneUrl(url)) = checkout {
        let is_url = url.contains("://") || (url.contains(':') && url.contains('@'));
        if !is_url && Path::new(url.as_str()).is_relative() {
            *url = base_dir.join(url.as_str()).display().to_string();
        }
    }
}

/// Working copies of one repository for one kind of run. Cheap to clone.
#[derive(Clone)]
pub struct Copies {
    inner: Arc<Inner>,
}

struct Inner {
    mirrors: Mirrors,
    repo: RepoName,
    /// `None`: ask GitHub for the repository's `clone_url` (once; it does not change).
    url: Option<String>,
    github: Option<Github>,
    /// `step_user`: each copy is handed to that user, so the steps can build in it.
    step_user: Option<StepUser>,
    clone_url: tokio::sync::OnceCell<String>,
}

impl Copies {
    /// Copies as `checkout` says; `None` when it is off (steps in the config file's directory).
    pub fn new(
        mirrors: Mirrors,
        repo: RepoName,
        checkout: &CheckoutConfig,
        github: Option<Github>,
        step_user: Option<StepUser>,
    ) -> Option<Copies> {
        let url = match checkout {
            CheckoutConfig::Off => return None,
            CheckoutConfig::GitHub => None,
            CheckoutConfig::CloneUrl(url) => Some(url.clone()),
        };
        Some(Copies {
            inner: Arc::new(Inner {
                mirrors,
                repo,
                url,
                github,
                step_user,
                clone_url: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// The remote to fetch from, with the token git authenticates with.
    async fn remote(&self) -> Result<Remote, String> {
        let inner = &self.inner;
        let url = match &inner.url {
            Some(url) => url.clone(),
            None => {
                let github = inner.github.as_ref().ok_or_else(|| {
                    "`checkout = true` needs GitHub credentials (GITHUB_TOKEN or the GitHub App) to ask GitHub for the clone URL"
                        .to_string()
                })?;
                inner
                    .clone_url
                    .get_or_try_init(|| github.clone_url(&inner.repo))
                    .await
                    .map_err(|e| format!("GitHub did not say where to clone {} from: {e}", inner.repo))?
                    .clone()
            }
        };
        // GitHub's own URL, or another `https://` one the operator named for this repository, gets
        // the bot's token; a `file://` path or an `http://` mirror inside the network gets none.
        let token = match &inner.github {
            Some(github) if url.starts_with("https://") => Some(
                github
                    .git_token()
                    .await
                    .map_err(|e| format!("no GitHub token for git: {e}"))?,
            ),
            _ => None,
        };
        Ok(Remote { url, token })
    }

    /// A working copy at `sha` named after its run (`deploy-12`, `nightly-3-env-1`), removed when
    /// dropped. Fetching is retried by [`Mirrors`]; an error is the reason, for people.
    pub async fn checkout(&self, sha: &CommitSha, name: &str) -> Result<WorkingCopy, String> {
        let remote = self.remote().await?;
        let copy = self
            .inner
            .mirrors
            .checkout(&self.inner.repo, &remote, sha, name)
            .await
            .map_err(|e| {
                format!(
                    "could not get a working copy of {} at {}: {e}",
                    self.inner.repo,
                    short(sha)
                )
            })?;
        if let Some(user) = &self.inner.step_user {
            let (root, uid, gid) = (copy.path().to_path_buf(), user.uid, user.gid);
            tokio::task::spawn_blocking(move || hand_over(&root, uid, gid))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
                .map_err(|e| format!("could not give the working copy to step_user {}: {e}", user.name))?;
        }
        Ok(copy)
    }

    /// The distinct authors of the commits in `head` that are not in `base` (both fetched by an
    /// earlier [`Copies::checkout`] or [`Copies::changed_files`]); empty when git cannot say.
    pub async fn authors(&self, base: &CommitSha, head: &CommitSha) -> Vec<String> {
        self.inner
            .mirrors
            .authors(&self.inner.repo, base, head)
            .await
            .unwrap_or_default()
    }

    /// The paths `head` changed since its merge base with `base` (SPEC §4.6), from the mirror:
    /// complete, however many (GitHub's compare stops at 300). Both commits are fetched first.
    pub async fn changed_files(&self, base: &CommitSha, head: &CommitSha) -> Result<Vec<String>, String> {
        let remote = self.remote().await?;
        let (mirrors, repo) = (&self.inner.mirrors, &self.inner.repo);
        let why = |e: crate::working_copy::CopyError| {
            format!("could not list the files {} changed in {repo}: {e}", short(head))
        };
        mirrors.fetch(repo, &remote, &[base, head]).await.map_err(why)?;
        let since = mirrors.merge_base(repo, base, head).await.map_err(why)?;
        // No common history at all: everything at `head` is new, as GitHub would compare it.
        let since = match since {
            Some(mb) => mb,
            None => return Err(format!("{} and {} have no common history", short(base), short(head))),
        };
        mirrors.changed_files(repo, &since, head).await.map_err(why)
    }
}

/// Makes `root` and everything under it (symlinks themselves, not their targets) belong to the step
/// user: the steps write build outputs there. The bot keeps the mirror the copy borrows objects
/// from, so a step can read history through the alternates but never change it. Nothing to do
/// when the steps run as the bot's own user.
fn hand_over(root: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // The bot made the copy: already the step user's when the steps run as the bot's own user.
    if std::fs::metadata(root)?.uid() == uid {
        return Ok(());
    }
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        if std::fs::symlink_metadata(&path)?.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                todo.push(entry?.path());
            }
        }
    }
    Ok(())
}

fn short(sha: &CommitSha) -> String {
    sha.as_str().chars().take(7).collect()
}
