//! Restartable sequences (issue 9): work in progress.
