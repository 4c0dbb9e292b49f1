//go:build linux

package shadow

import (
	"runtime"
	"syscall"
)

// workerNice is the scheduling niceness of the candidate's worker thread:
// on a CPU the line saturates, the kernel then gives the line's own
// threads about ten times the candidate's share, so the candidate takes
// idle time rather than the line's (the worker's detectors run in this
// thread: ONNX Runtime runs a session with one intra-op thread in its
// caller).
const workerNice = 10

// lowerPriority pins the calling goroutine to its OS thread and lowers
// that thread's priority; it reports an error it met (the worker then
// runs at normal priority, which is correct but may cost the line time).
func lowerPriority() error {
	runtime.LockOSThread()
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), workerNice)
}
