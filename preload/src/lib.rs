//! slabworks as the process malloc (issue 8): work in progress.
