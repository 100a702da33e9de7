//! Scrape source tests.
