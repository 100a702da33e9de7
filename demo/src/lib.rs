//! The demo key-value microservice.
