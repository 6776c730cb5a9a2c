//! slub: Linux 6.4 SLUB on the slabworks page provider (issue 5).
