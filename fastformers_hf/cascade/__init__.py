"""TangoBERT-style two-tier confidence cascades: configuration, calibration curve, the cascade model."""
