package infer

/*
#include <signal.h>
#include <string.h>

static int segad_sig_get(int sig, struct sigaction *sa) { return sigaction(sig, NULL, sa); }
static int segad_sig_set(int sig, const struct sigaction *sa) { return sigaction(sig, sa, NULL); }
static int segad_sig_ignore(int sig) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	return sigaction(sig, &sa, NULL);
}
static int segad_sig_is_default_or_ignored(int sig) {
	struct sigaction sa;
	if (sigaction(sig, NULL, &sa) != 0) return -1;
	return sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN;
}
*/
import "C"

import (
	"sync"
	"syscall"
)

// The CUDA runtime (and TensorRT, which loads it) installs its own handlers
// for some signals when the first CUDA context is created. Go's runtime
// installs its handlers once at start and never re-checks: signal.Notify
// does not reinstall a handler Go believes it already owns, so after a CUDA
// session SIGTERM/SIGINT would no longer reach the daemon's shutdown path and
// a nil dereference in Go would no longer become a panic. We therefore save
// the process's sigactions before creating a GPU session and put them back
// right after; the C library keeps working because it only needed its
// handlers during initialisation.
var restoredSignals = []syscall.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGILL,
	syscall.SIGTRAP, syscall.SIGABRT, syscall.SIGBUS, syscall.SIGFPE,
	syscall.SIGSEGV, syscall.SIGPIPE, syscall.SIGALRM, syscall.SIGTERM,
	syscall.SIGURG, syscall.SIGCHLD, syscall.SIGPROF, syscall.SIGUSR1,
	syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGXCPU, syscall.SIGXFSZ,
}

// gpuSessionMu serialises GPU session creation so that two detectors opening
// at once cannot save each other's half-replaced handlers.
var gpuSessionMu sync.Mutex

type signalState struct {
	sa [32]C.struct_sigaction
	ok [32]bool
}

// saveSignals records the current handlers of restoredSignals.
func saveSignals() *signalState {
	st := &signalState{}
	for _, s := range restoredSignals {
		if int(s) < len(st.sa) && C.segad_sig_get(C.int(s), &st.sa[s]) == 0 {
			st.ok[s] = true
		}
	}
	return st
}

// restore puts the recorded handlers back.
func (st *signalState) restore() {
	for _, s := range restoredSignals {
		if int(s) < len(st.ok) && st.ok[s] {
			C.segad_sig_set(C.int(s), &st.sa[s])
		}
	}
}

// clobberSignal stands in for a foreign library replacing a handler (what
// the CUDA runtime does); tests use it where no GPU exists.
func clobberSignal(s syscall.Signal) { C.segad_sig_ignore(C.int(s)) }

// signalHandledByGo reports whether a real handler (not default/ignore) is installed.
func signalHandledByGo(s syscall.Signal) bool {
	return C.segad_sig_is_default_or_ignored(C.int(s)) == 0
}
