"""The operator's console: alerts with their anomaly maps, review into the feedback topic, the registry, thresholds and the fleet."""
