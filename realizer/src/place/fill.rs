//! Host-by-host construction, for placements the greedy pass cannot pack.
