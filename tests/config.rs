//! Configuration and PAT input on the real binary: each problem is a one-line error naming the
//! thing to fix (exit 78, 64 for usage), a named PAT source never falls through to another, a PAT
//! typed in the wrong place is never echoed, config and PAT files are capped regular files.

/// Bad config, PAT and hotkey files and flags: the error names the key or file to fix.
mod errors;
/// PAT sources (files, credentials, flags), a PAT in the wrong place, capped reads, flag errors.
mod pat;
