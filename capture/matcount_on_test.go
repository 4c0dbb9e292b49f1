//go:build matprofile

package capture

import (
	"bytes"

	"gocv.io/x/gocv"
)

// matCount is the number of live gocv.Mats (built with -tags matprofile).
func matCount() (int, bool) { return gocv.MatProfile.Count(), true }

// matStacks lists where the live Mats were created, for a failing leak test.
func matStacks() string {
	var b bytes.Buffer
	gocv.MatProfile.WriteTo(&b, 1)
	return b.String()
}
