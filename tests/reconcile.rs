//! `patrol reconcile` on the real binary against `patrol validator serve` processes and a fake
//! GitHub: what a user sees (exit codes, JSON rows, what each validator stored, what GitHub was
//! asked), and the timer's `--metrics-file`.

/// Repairs, backoff, inconclusive answers, identity locks, rotation, dry run, the GitHub budget.
mod e2e;
/// `--metrics-file`: ready, counters across runs, preflight series, refused paths, unsaved state.
mod metrics_file;
