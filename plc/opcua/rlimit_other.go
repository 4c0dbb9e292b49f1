//go:build !linux

package opcua

// limitAddressSpace is Linux only; elsewhere only the Go memory limit
// applies.
func limitAddressSpace(uint64) (base, limit uint64, err error) { return 0, 0, nil }
