// Package drift watches the line for drift: the per-segment feature
// distributions of passed parts against the bundle's training distribution
// of good parts (population stability index over a sliding window, per
// segment, detector and statistic), and the reject rate against the
// bundle's calibrated false-reject rate (one-sided binomial test). The
// Monitor is a daemon output: it receives every result with its feature
// row, decides nothing on the line, and raises an alarm with hysteresis
// that names what drifted ("wires: fine mean drifted, PSI 0.31"), for
// health and metrics. docs/assurance.md describes it.
package drift
