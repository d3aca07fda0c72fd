//! telemetry (stub)
