//! Kubernetes quantities (`500m`, `1536Ki`, `1e3`): parsing and canonical formatting.
