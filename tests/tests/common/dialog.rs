//! Terminal conversations: a command run on a pseudo-terminal by `expect`, its prompts
//! answered in order, the way a person at a keyboard (or `ssh`'s password reader) sees them.
//!
//! Used where piping answers is not faithful: `ssh` reads from /dev/tty, and libpam's
//! `misc_conv` (pamtester) reads each answer with a single `read(2)`, so two answers written
//! at once into a pipe would arrive as one.

use super::{require_tool, run, Run, DEFAULT_PROMPT, PROCESS_LIMIT};
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Seconds `expect` waits for any one prompt or for the end of the command.
const EXPECT_TIMEOUT_SECS: u32 = 30;

/// The expect program. Environment: `PAMTOTP_ANSWERS` (count), `PAMTOTP_PROMPT_<i>` and
/// `PAMTOTP_ANSWER_<i>`, `PAMTOTP_WATCH` (more prompt texts, one a line), `PAMTOTP_TIMEOUT`.
/// It answers prompt i when its text appears, then waits for the command to end. Any prompt
/// text (planned or watched) seen out of turn, or after every answer was used, means the
/// command asked something unplanned: it stops with exit 125. It always prints a last line
/// `DIALOG-ANSWERED: <n>` and exits with the command's status (124 on a timeout).
const SCRIPT: &str = r#"
set timeout $env(PAMTOTP_TIMEOUT)
set count $env(PAMTOTP_ANSWERS)
set prompts {}
for {set i 0} {$i < $count} {incr i} { lappend prompts $env(PAMTOTP_PROMPT_$i) }
set watch {}
foreach text [concat $prompts [split $env(PAMTOTP_WATCH) "\n"]] {
    if {$text eq ""} { continue }
    regsub -all {[][{}()*+?.\\^$|]} $text {\\&} quoted
    lappend watch $quoted
}
set watch [join $watch "|"]
set next 0
proc done {status} {
    global next
    puts "\nDIALOG-ANSWERED: $next"
    exit $status
}
proc finish {} {
    set status [wait]
    if {[lindex $status 2] != 0} { puts "\nDIALOG: wait failed: $status"; done 127 }
    if {[llength $status] > 4} { puts "\nDIALOG: killed by [lindex $status 5]"; done 126 }
    done [lindex $status 3]
}
log_user 1
spawn -noecho {*}$argv
while {$next < $count} {
    expect {
        -ex [lindex $prompts $next] {
            send -- "$env(PAMTOTP_ANSWER_$next)\r"
            incr next
        }
        -re $watch { puts "\nDIALOG: unplanned prompt $expect_out(0,string)"; done 125 }
        eof { finish }
        timeout { puts "\nDIALOG: timed out waiting for prompt [expr {$next + 1}]"; done 124 }
    }
}
if {$watch eq ""} {
    expect {
        eof { finish }
        timeout { puts "\nDIALOG: timed out waiting for the end"; done 124 }
    }
}
expect {
    -re $watch { puts "\nDIALOG: unplanned prompt $expect_out(0,string)"; done 125 }
    eof { finish }
    timeout { puts "\nDIALOG: timed out waiting for the end"; done 124 }
}
"#;

/// Exit status of a dialog whose command showed a prompt out of turn or one too many.
pub const PROMPTED_AGAIN: i32 = 125;

/// What happened in a dialog.
#[derive(Debug, Clone)]
pub struct DialogOut {
    /// The command's exit status, or 124 (timeout), 125 (an unplanned prompt), 126 (killed).
    pub code: i32,
    /// Everything the command wrote to its terminal, and the dialog's own notes.
    pub output: String,
    /// How many of the planned answers were given.
    pub answered: usize,
    /// The command line and the planned prompts, for failure messages.
    pub command: String,
}

impl std::fmt::Display for DialogOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: exit {}, {} answer(s) given\n--- terminal ---\n{}",
            self.command, self.code, self.answered, self.output
        )
    }
}

/// Runs `program ARGS...` on a terminal, answering `steps` (prompt text, answer) in order;
/// `watch` names more prompt texts that must not appear unplanned. `env_remove` is removed
/// from the command's environment.
pub fn converse(
    program: &Path,
    args: &[OsString],
    steps: &[(&str, &str)],
    watch: &[&str],
    env_remove: &[&str],
) -> DialogOut {
    let expect = require_tool("expect");
    let mut script = tempfile::Builder::new()
        .prefix("pamtotp-e2e-dialog-")
        .suffix(".exp")
        .tempfile()
        .expect("cannot create the expect script");
    script
        .write_all(SCRIPT.as_bytes())
        .expect("cannot write the expect script");
    let mut command = Command::new(&expect);
    command
        .arg("-f")
        .arg(script.path())
        .arg(program)
        .args(args)
        .env("PAMTOTP_TIMEOUT", EXPECT_TIMEOUT_SECS.to_string())
        .env("PAMTOTP_ANSWERS", steps.len().to_string())
        .env("PAMTOTP_WATCH", watch.join("\n"))
        .current_dir("/");
    for (i, (prompt, answer)) in steps.iter().enumerate() {
        command
            .env(format!("PAMTOTP_PROMPT_{i}"), prompt)
            .env(format!("PAMTOTP_ANSWER_{i}"), answer);
    }
    for name in env_remove {
        command.env_remove(name);
    }
    let shown = format!(
        "{} {} (answering {})",
        program.display(),
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        steps
            .iter()
            .map(|(prompt, _)| format!("{prompt:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let result: Run = run(&mut command, None, PROCESS_LIMIT);
    let output = result.output().replace('\r', "");
    let answered = output
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("DIALOG-ANSWERED: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!("the expect dialog ended without its summary: {shown}\n{output}")
        });
    DialogOut {
        code: result.code,
        output,
        answered,
        command: shown,
    }
}

/// `pamtester SERVICE USER authenticate` on a terminal, as root, answering `steps`; the
/// module's prompt and pam_unix's `Password:` count as unplanned anywhere else.
pub fn pamtester_dialog(service: &str, user: &str, steps: &[(&str, &str)]) -> DialogOut {
    let args: Vec<OsString> = [service, user, "authenticate"]
        .iter()
        .map(OsString::from)
        .collect();
    converse(
        &require_tool("pamtester"),
        &args,
        steps,
        &[DEFAULT_PROMPT, "Password:"],
        &[],
    )
}

impl DialogOut {
    /// pamtester's verdict.
    pub fn pam_success(&self) -> bool {
        self.code == 0 && self.output.contains("successfully authenticated")
    }

    #[track_caller]
    pub fn assert_pam_success(&self) {
        assert!(self.pam_success(), "expected PAM success: {self}");
    }

    /// Asserts a pamtester failure with the given pam_strerror text.
    #[track_caller]
    pub fn assert_pam_failure(&self, text: &str) {
        assert!(
            self.code != 0 && !self.output.contains("successfully authenticated"),
            "expected PAM failure ({text}): {self}"
        );
        assert!(
            self.output.contains(text),
            "expected the PAM failure text {text:?}: {self}"
        );
    }

    /// How often `text` appears on the terminal.
    pub fn count(&self, text: &str) -> usize {
        self.output.matches(text).count()
    }
}
