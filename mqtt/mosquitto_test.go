package mqtt

import (
	"context"
	"testing"

	"github.com/segad-edge/segad-edge/internal/testenv"
)

// The real test broker lives in internal/testenv, shared with the daemon's
// end-to-end tests; these names keep the mqtt tests short.
type (
	mosquitto = testenv.Mosquitto
	mosqOpts  = testenv.MosquittoOptions
)

func startMosquitto(t testing.TB, o mosqOpts) *mosquitto { return testenv.StartMosquitto(t, o) }

func freePort(t testing.TB) int { return testenv.FreePort(t) }

func runClient(t testing.TB, ctx context.Context, tool string, args ...string) (string, error) {
	return testenv.RunClient(t, ctx, tool, args...)
}
