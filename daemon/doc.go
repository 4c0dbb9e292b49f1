// Package daemon joins the stages into the running inspection line, and
// does nothing else:
//
//	capture.Source -> queue.go -> model.Inspector (Infer | Score) -> finish.go -> Publisher (MQTT) + Outputs
//
// One frame's path: source.go (captureLoop takes it from the source into
// the bounded queue, queue.go), run.go (two stages drain the queue:
// inference of frame n+1 overlaps the scoring of frame n), finish.go (the
// result goes to the primary publisher, whose durable store gates the
// frame's acknowledgement, then to every other output in order, counted,
// audited). reload.go applies configuration changes by class (config.Diff):
// diff, build, swap. http.go is the HTTP API, health.go the counters
// behind the health topic, /readyz and Prometheus.
//
// The stages meet at small interfaces: capture.Source, model.Detectors and
// model.Scorer, Publisher and Output, so each stage stays usable and
// testable on its own.
package daemon
