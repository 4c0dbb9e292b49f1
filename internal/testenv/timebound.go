package testenv

import "time"

// raceSlowdown is how much slower code runs under the race detector, with
// room for a loaded CI machine: Go documents 2-20x; a YAML parse measured
// here went from 0.16 s to 0.84 s idle and 2 s with the cores busy.
const raceSlowdown = 10

// TimeBound scales a wall-clock bound that guards against a hang or a
// super-linear blow-up (not a speed figure: those are benchmarks) to the
// build: unchanged normally, raceSlowdown times longer under -race.
func TimeBound(d time.Duration) time.Duration {
	if Race {
		return d * raceSlowdown
	}
	return d
}
