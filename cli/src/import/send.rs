//! Sending what an import found to the agent: requests split as the proto client says
//! (each fits in one frame), and each profile's outcome recorded in the report.

use super::report::{Report, Verdict};
use super::world::World;
use super::Candidate;
use crate::args::ImportOptions;
use indicatif::ProgressBar;
use pam_totp_proto::client::import_batches;
use pam_totp_proto::text::sanitize;
use pam_totp_proto::{ApiError, ErrorCode, ImportOutcome, ImportProfile, Reply, Request};

/// Sends the candidates in batches and records each outcome. A batch the agent refuses as a
/// whole marks its profiles failed and the next batch goes on; an unreachable agent (or one
/// that cannot record state) stops the run.
pub fn send(
    report: &mut Report,
    candidates: Vec<Candidate>,
    options: ImportOptions,
    world: &mut dyn World,
    progress: &ProgressBar,
) -> Result<(), ApiError> {
    if options.dry_run || candidates.is_empty() {
        return Ok(());
    }
    let total = candidates.len();
    let (entries, profiles): (Vec<usize>, Vec<ImportProfile>) = candidates
        .into_iter()
        .map(|candidate| (candidate.entry, candidate.profile))
        .unzip();
    let batches = import_batches(&profiles, options.replace);
    let mut profiles = profiles.into_iter();
    let mut done = 0;
    let mut imported = 0;
    for range in batches {
        let entries = &entries[range.clone()];
        let batch: Vec<ImportProfile> = profiles.by_ref().take(range.len()).collect();
        let accounts: Vec<String> = batch.iter().map(|p| p.account.clone()).collect();
        let request = Request::Import {
            profiles: batch,
            replace: options.replace,
        };
        let outcomes = match world.call(request) {
            Ok(Reply::Imported(outcomes)) if outcomes.len() == entries.len() => outcomes,
            Ok(other) => {
                return Err(ApiError::internal(format!(
                    "the agent sent an unexpected reply ({}) to an import{}",
                    other.kind(),
                    progress_note(imported, total)
                )))
            }
            Err(mut error) if error.code == ErrorCode::Unavailable => {
                error.message = format!("{}{}", error.message, progress_note(imported, total));
                return Err(error);
            }
            Err(error) => accounts
                .iter()
                .map(|account| ImportOutcome {
                    account: account.clone(),
                    error: Some(error.clone()),
                })
                .collect(),
        };
        for ((entry, outcome), account) in entries.iter().zip(outcomes).zip(&accounts) {
            let verdict = match outcome.error {
                None if outcome.account == *account => {
                    imported += 1;
                    Verdict::Imported
                }
                None => Verdict::Failed(ApiError::internal(format!(
                    "the agent answered for '{}' instead",
                    sanitize(&outcome.account)
                ))),
                Some(error) => Verdict::Failed(error),
            };
            report.entries[*entry].verdict = verdict;
        }
        done += entries.len();
        progress.set_position(done as u64);
    }
    Ok(())
}

fn progress_note(imported: usize, total: usize) -> String {
    format!(" ({imported} of {total} profiles were imported before this)")
}
