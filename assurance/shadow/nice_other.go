//go:build !linux

package shadow

// lowerPriority is a no-op where thread priorities are not set (the
// candidate's worker runs at normal priority).
func lowerPriority() error { return nil }
