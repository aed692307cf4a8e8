//! Fuzzes Gandalf's command language (gandalf/src/command.rs): the `/gandalf` Slack command, the
//! `<pr>` reference inside it, and the `@gandalf` lines of PR comments (which anyone able to comment
//! on a pull request controls). Besides "never panics", checks that a parsed pull request reference
//! is positive and renders as something that parses back to itself, that priorities stay in their
//! documented range, and that a pause reason is bounded and has no control characters.
#![no_main]

use gandalf::command::{Command, CommentCommand, PrRef, parse, parse_comment, parse_pr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    match parse(&text) {
        Ok(Command::Merge { pr, priority }) => {
            pr_round_trips(&pr);
            assert!((-1000..=1000).contains(&priority), "priority {priority} out of range");
        }
        Ok(Command::Cancel { pr } | Command::Retry { pr } | Command::Status { pr } | Command::Plan { pr }) => {
            pr_round_trips(&pr)
        }
        Ok(Command::Pause { reason, .. }) => {
            assert!(reason.chars().count() <= 300);
            assert!(!reason.chars().any(char::is_control));
        }
        Ok(_) => {}
        Err(e) => assert!(e.message.chars().count() <= 200, "error too long: {:?}", e.message),
    }

    if let Ok(pr) = parse_pr(&text) {
        pr_round_trips(&pr);
    }

    // A comment yields at most one command per line, and priorities stay in range.
    let commands = parse_comment(&text, "gandalf");
    assert!(commands.len() <= text.lines().count());
    for c in commands {
        if let CommentCommand::Merge { priority } = c {
            assert!((-1000..=1000).contains(&priority));
        }
    }
});

fn pr_round_trips(pr: &PrRef) {
    assert!(pr.number.get() > 0, "pull request #0 accepted");
    assert_eq!(parse_pr(&pr.to_string()).as_ref(), Ok(pr), "{pr} does not parse back");
}
