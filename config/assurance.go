package config

// AssuranceConfig is line assurance: golden-sample challenges and drift
// alarms (docs/assurance.md).
type AssuranceConfig struct {
	// Golden runs known good and bad parts through the pipeline at start,
	// on a schedule and on request.
	Golden GoldenConfig `yaml:"golden"`
	// Drift compares passed parts' features with the bundle's training
	// distribution of good parts.
	Drift DriftConfig `yaml:"drift"`
}
