package opcua

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// limitAddressSpace sets RLIMIT_AS of this process to what it has mapped
// now (VmSize) plus growth bytes, so that an allocation beyond it fails at
// once (the Go runtime then ends the process). It returns the size now and
// the limit.
func limitAddressSpace(growth uint64) (base, limit uint64, err error) {
	base, err = vmSize()
	if err != nil {
		return 0, 0, err
	}
	limit = base + growth
	return base, limit, syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit})
}

// vmSize is this process's address-space size in bytes.
func vmSize() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmSize:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/self/status VmSize %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/self/status has no VmSize")
}
