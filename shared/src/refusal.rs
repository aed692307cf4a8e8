//! The one way both bots refuse: every handler returns [`Handled<T>`], and `?` does the rest.
//!
//! A [`Refusal`] is either the user's fault — a wrong name, a missing permission, a PR that cannot be
//! queued — carrying the message they should read, or ours — a database or GitHub failure — carrying
//! the error chain, which is logged in full and answered with a generic apology so no internals
//! leak. Both mean "nothing changed": a handler refuses before it commits.
//!
//! [`Answer`] is what a command produced, for Slack and for `exec`'s exit status. The control
//! center uses the same type with its own message (`Refusal<PageMissing>`).

use crate::slack::Reply;

/// What a command produced: the reply, and whether it was refused (for `exec`'s exit status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub reply: Reply,
    pub refused: bool,
}

impl Answer {
    pub fn ok(reply: Reply) -> Self {
        Answer { reply, refused: false }
    }

    pub fn refused(reply: Reply) -> Self {
        Answer { reply, refused: true }
    }
}

/// Why a command stopped without changing anything.
#[derive(Debug)]
pub enum Refusal<M = Reply> {
    /// The user's fault: they read this message.
    User(M),
    /// Ours: logged with its whole chain; the user gets a generic apology.
    Internal(anyhow::Error),
}

/// The result of every step of a handler.
pub type Handled<T, M = Reply> = Result<T, Refusal<M>>;

impl<M, E: Into<anyhow::Error>> From<E> for Refusal<M> {
    fn from(e: E) -> Self {
        Refusal::Internal(e.into())
    }
}

/// Refuses with a message for the user: `return refuse(messages::unknown_env(..))`.
pub fn refuse<T, M>(message: M) -> Handled<T, M> {
    Err(Refusal::User(message))
}

impl Refusal<Reply> {
    /// Turns a refusal into the answer the user sees; an internal error is logged here, once,
    /// with `context` naming what failed.
    pub fn into_answer(self, context: &str, apology: impl FnOnce() -> Reply) -> Answer {
        match self {
            Refusal::User(reply) => Answer::refused(reply),
            Refusal::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "{context} failed");
                Answer::refused(apology())
            }
        }
    }
}

/// Adds `.or_refuse(message)` to `Option`s: `None` becomes the user's refusal.
pub trait OrRefuse<T> {
    fn or_refuse<M>(self, message: impl FnOnce() -> M) -> Handled<T, M>;
}

impl<T> OrRefuse<T> for Option<T> {
    fn or_refuse<M>(self, message: impl FnOnce() -> M) -> Handled<T, M> {
        self.ok_or_else(|| Refusal::User(message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(fail: Option<bool>) -> Handled<u8> {
        match fail {
            None => Ok(1),
            Some(true) => refuse(Reply::ephemeral("no such environment")),
            Some(false) => Err(anyhow::anyhow!("connection reset"))?,
        }
    }

    #[test]
    fn user_refusals_keep_their_message_and_internal_ones_apologise() {
        let sorry = || Reply::ephemeral("Sorry, something went wrong on our side.");
        assert_eq!(step(None).unwrap(), 1);
        let a = step(Some(true)).unwrap_err().into_answer("test", sorry);
        assert_eq!(a, Answer::refused(Reply::ephemeral("no such environment")));
        let a = step(Some(false)).unwrap_err().into_answer("test", sorry);
        assert_eq!(a, Answer::refused(sorry()));
        assert!(None::<u8>.or_refuse(|| "missing").is_err());
    }
}
