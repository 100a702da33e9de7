//! Tests of the router: every path, error and health answer.
