package brf

import "testing"

// builderOf reparses an XGBoost JSON model into a builder, so tests can lay it
// out both ways.
func builderOf(t testing.TB, data []byte) *builder {
	t.Helper()
	m, err := loadXGBoostJSONBuilder(data)
	if err != nil {
		t.Fatalf("reparse: %v", err)
	}
	return m
}
