package config

import _ "embed"

// Example is a complete, commented configuration (`segad config example`).
//
//go:embed example.yaml
var Example []byte
