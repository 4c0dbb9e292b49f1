package config

// GoldenConfig is assurance.golden: golden-sample challenges.
type GoldenConfig struct{}
