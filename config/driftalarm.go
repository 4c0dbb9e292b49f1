package config

// DriftConfig is assurance.drift: drift alarms on passed parts' features.
type DriftConfig struct{}
